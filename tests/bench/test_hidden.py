"""bench/hidden.py's helpers: the MLP control at equal parameters, and the bytes a decode step reads."""

import torch

from bench.hidden import hidden_kept, mlp_match, weight_bytes
from prunetune.builtin.tiny import tiny_model
from prunetune.models.shape import ModelShape
from prunetune.pruning.plan import PruningPlan
from prunetune.pruning.surgery import apply_plan


def test_mlp_control_matches_the_parameter_count_it_is_asked_for():
    model, _ = tiny_model("llama")
    shape = ModelShape.from_config(model.config)
    pruned = shape.after(hidden_removed=64 - hidden_kept(64, 0.75, 8))
    for non_emb, count in ((False, ModelShape.params), (True, ModelShape.non_embedding_params)):
        n = mlp_match(shape, count(pruned), non_emb)
        per_neuron = shape.num_hidden_layers * (3 * 64 + 2)  # llama tiny has MLP biases
        assert abs(count(shape.after(mlp_removed=n)) - count(pruned)) <= per_neuron / 2


def test_weight_bytes_counts_one_embedding_row_and_follows_the_cut():
    model, _ = tiny_model("llama")  # untied: lm_head read in full, the embedding table as one row
    total = sum(p.numel() * 4 for p in model.parameters())
    assert weight_bytes(model) == total - 320 * 64 * 4 + 64 * 4
    apply_plan(model, PruningPlan(hidden_channels=list(range(16))))
    assert weight_bytes(model) < total * 0.8
    tied, _ = tiny_model("gemma2")
    assert weight_bytes(tied) == sum(p.numel() * 4 for p in tied.parameters())


def test_uncompensate_restores_the_kept_norm_weights():
    from bench.hidden import uncompensate

    model, _ = tiny_model("llama")
    with torch.no_grad():
        model.model.norm.weight.uniform_(0.5, 1.5)
    before = model.model.norm.weight.detach().clone()
    apply_plan(model, PruningPlan(hidden_channels=list(range(16))))
    assert not torch.allclose(model.model.norm.weight, before[16:])
    uncompensate(model, 64)
    assert torch.allclose(model.model.norm.weight, before[16:])
