"""Expert scorers: shapes, no side effects, padding-invariant, zeroed experts / neurons rank lowest; one prune step."""

import pytest
import torch

from prunetune.builtin.tiny import tiny_model
from prunetune.builtin.tokenizer import tiny_tokenizer
from prunetune.errors import UserError
from prunetune.models import get_adapter
from prunetune.models.shape import ModelShape
from prunetune.pruning.importance import (
    EXPERT_SCORERS,
    calibration_batches,
    score_expert_neurons,
    score_experts,
)
from prunetune.pruning.prune import StepSpec, prune_step
from tests.pruning.importance.conftest import TEXTS, assert_untouched, snapshot


def test_expert_scorers_shape_no_side_effects_and_padding(moe_family, batches):
    model, _ = tiny_model(moe_family)
    shape = ModelShape.from_config(model.config)
    model.train()
    before = snapshot(model)
    one_by_one = calibration_batches(tiny_tokenizer(), TEXTS, max_length=48, batch_size=1)
    for method in EXPERT_SCORERS:
        scores = score_experts(model, method, batches, seed=3, progress=False)
        assert scores.shape == (len(shape.moe_layers), shape.num_experts) and torch.isfinite(scores).all()
        assert model.training
        assert_untouched(model, before)
        if method != "random":  # pads are masked: batching does not change the statistics
            assert torch.allclose(scores, score_experts(model, method, one_by_one, progress=False), atol=1e-5)
    freq = score_experts(model, "frequency", batches, progress=False)
    assert torch.allclose(freq.sum(dim=1), torch.full((len(shape.moe_layers),), float(shape.experts_per_tok)))


def test_zeroed_experts_and_neurons_rank_lowest(moe_family, batches):
    model, _ = tiny_model(moe_family)
    a, shape = get_adapter(model), ModelShape.from_config(model.config)
    W = shape.moe_intermediate_size
    with torch.no_grad():
        for i in shape.moe_layers:
            layer = a.layers(model)[i]
            down = getattr(a.moe.experts_module(layer), a.moe.down)
            down[5] = 0  # expert 5 adds nothing to the residual stream
            down[:, :, [2, 9]] = 0  # neurons 2 and 9 of every expert
            if a.moe.shared:
                getattr(a.moe.shared_module(layer), a.mlp_out).weight[:, [4, 11]] = 0
    reap = score_experts(model, "reap", batches, progress=False)
    assert (reap.argmin(dim=1) == 5).all()
    neurons, shared = score_expert_neurons(model, "activation", batches, progress=False)
    per_expert = neurons.reshape(len(shape.moe_layers), shape.num_experts, W)
    low = per_expert.topk(2, dim=-1, largest=False).indices.sort(dim=-1).values
    routed = score_experts(model, "frequency", batches, progress=False) > 0
    routed[:, 5] = False  # every neuron of the zeroed expert ties at 0
    assert (low[routed] == torch.tensor([2, 9])).all()
    if a.moe.shared:
        assert (shared.topk(2, dim=-1, largest=False).indices.sort(dim=-1).values == torch.tensor([4, 11])).all()
    else:
        assert shared is None


def test_prune_step_removes_the_lowest_experts(batches):
    model, _ = tiny_model("qwen2_moe")
    spec = StepSpec(experts=2, expert_neurons=8, shared_expert_neurons=16, expert_importance="reap")
    scores = score_experts(model, "reap", batches, progress=False)
    plan, _ = prune_step(model, spec, batches, progress=False)
    lowest2 = scores.argsort(dim=1)[:, :2].sort(dim=1).values.tolist()
    assert [plan.experts[i] for i in (0, 2, 3)] == lowest2
    cfg = model.config
    assert (cfg.num_experts, cfg.moe_intermediate_size, cfg.shared_expert_intermediate_size) == (6, 24, 32)
    assert plan.meta["shape_after"]["num_experts"] == 6


@pytest.mark.parametrize("spec, match", [
    (dict(experts=1), "dense model"),
    (dict(expert_importance="reaap"), "did you mean 'reap'"),
])
def test_step_errors_before_scoring(batches, spec, match):
    model, _ = tiny_model("llama" if "experts" in spec else "mixtral")
    with pytest.raises(UserError, match=match):
        prune_step(model, StepSpec(**spec), batches, progress=False)
