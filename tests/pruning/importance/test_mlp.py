"""MLP neuron scorers: shapes, determinism, no side effects, zeroed neurons rank lowest, the paper's set logic."""

import pytest
import torch

from prunetune.builtin.tiny import tiny_model
from prunetune.builtin.tokenizer import tiny_tokenizer
from prunetune.errors import UserError
from prunetune.models import get_adapter
from prunetune.pruning.importance import MLP_SCORERS, calibration_batches, score_mlp
from prunetune.pruning.importance.mlp import mlp_in_parts, ptl_deletion_set, ptl_scores
from tests.pruning.importance.conftest import GENERAL, assert_untouched, lowest, snapshot, zero_neurons

ZEROED = [3, 17, 40, 77]


def test_every_scorer_shape_determinism_and_no_side_effects(family, batches):
    model, tok = tiny_model(family)
    general = calibration_batches(tok, GENERAL, max_length=32, batch_size=2)
    model.train()  # scoring must switch to eval and restore this
    before = snapshot(model)
    for method in MLP_SCORERS:
        first = score_mlp(model, method, batches, general_batches=general, seed=3, progress=False)
        again = score_mlp(model, method, batches, general_batches=general, seed=3, progress=False)
        assert first.shape == (4, 96) and first.dtype == torch.float32 and first.device.type == "cpu"
        assert torch.isfinite(first).all(), method
        assert torch.equal(first, again), f"{method} not deterministic"
        assert model.training, f"{method} did not restore training mode"
        assert_untouched(model, before)
    assert not torch.equal(
        score_mlp(model, "random", batches, seed=4), score_mlp(model, "random", batches, seed=3)
    )


@pytest.mark.parametrize("method", ["activation", "taylor", "magnitude", "ptl"])
def test_zeroed_neurons_rank_lowest(family, batches, method):
    model, _ = tiny_model(family)
    zero_neurons(model, ZEROED)
    scores = score_mlp(model, method, batches, progress=False)
    assert lowest(scores, len(ZEROED)) == [set(ZEROED)] * 4


def test_bf16_scores_agree_with_fp32(batches):
    model, _ = tiny_model("llama")
    zero_neurons(model, ZEROED)
    fp32 = score_mlp(model, "activation", batches, progress=False)
    bf16 = score_mlp(model.to(torch.bfloat16), "activation", batches, progress=False)
    assert bf16.dtype == torch.float32
    assert lowest(bf16, len(ZEROED)) == [set(ZEROED)] * 4
    assert torch.allclose(bf16, fp32, rtol=0.05, atol=1e-4)


def test_taylor_restores_grad_state(batches):
    model, _ = tiny_model("qwen2")
    frozen = model.get_input_embeddings().weight
    frozen.requires_grad_(False)
    kept = get_adapter(model).mlp_out_linear(get_adapter(model).layers(model)[0]).weight
    kept.grad = torch.ones_like(kept)  # a gradient the caller was holding stays as it was
    score_mlp(model, "taylor", batches, progress=False)
    assert not frozen.requires_grad
    assert all(p.requires_grad for p in model.parameters() if p is not frozen)
    assert torch.equal(kept.grad, torch.ones_like(kept))
    assert all(p.grad is None for p in model.parameters() if p is not kept)


def test_padding_is_masked(family):
    """A batch of padded rows gives the same activation scores as the rows one at a time."""
    model, tok = tiny_model(family)
    texts = ["a much longer text about apples and clips and numbers 1 2 3", "short", "mid length text 42"]
    together = score_mlp(model, "activation", calibration_batches(tok, texts, batch_size=3), progress=False)
    apart = score_mlp(model, "activation", calibration_batches(tok, texts, batch_size=1), progress=False)
    assert torch.allclose(together, apart, rtol=1e-4, atol=1e-7)


def _last_token_activations(model, tok, texts):
    """Per text (run alone, no padding): [3 points, layers, width] last-token activations."""
    adapter = get_adapter(model)
    width = model.config.intermediate_size
    out = []
    for text in texts:
        ids = torch.tensor([tok(text)["input_ids"]])
        acts = torch.zeros(3, model.config.num_hidden_layers, width)
        handles = []

        def read_out(i, row, point, acts=acts):  # hooks must return None, or they would replace the output
            def hook(module, args, output):
                acts[point, i] = output[0, -1, row : row + width]

            return hook

        def read_in(i, acts=acts):
            def hook(module, args):
                acts[2, i] = args[0][0, -1]

            return hook

        for i, layer in enumerate(adapter.layers(model)):
            for linear, row, point in mlp_in_parts(adapter, layer, width):
                handles.append(linear.register_forward_hook(read_out(i, row, point)))
            handles.append(adapter.mlp_out_linear(layer).register_forward_pre_hook(read_in(i)))
        with torch.no_grad():
            model(ids)
        for h in handles:
            h.remove()
        out.append(acts)
    return out


@pytest.mark.parametrize("family_name", ["llama", "phi3"])
def test_ptl_matches_the_reference_set_logic(family_name):
    """Deletion set == union over points of (bottom-N on every reasoning text - top-N on every general text),
    computed with Python sets from unpadded single-text passes as the reference code does."""
    model, tok = tiny_model(family_name)
    from tests.pruning.importance.conftest import TEXTS

    top_n = 60
    reasoning = _last_token_activations(model, tok, TEXTS)
    general = _last_token_activations(model, tok, GENERAL)
    scores = score_mlp(
        model,
        "ptl",
        calibration_batches(tok, TEXTS, batch_size=4),
        general_batches=calibration_batches(tok, GENERAL, batch_size=2),
        options={"top_n": top_n, "order": "index"},
        progress=False,
    )
    some_deleted = False
    for layer in range(4):
        expected = set()
        for point in range(3):
            cand = set.intersection(
                *(set(a[point, layer].topk(top_n, largest=False).indices.tolist()) for a in reasoning)
            )
            prot = set.intersection(*(set(a[point, layer].topk(top_n).indices.tolist()) for a in general))
            expected |= cand - prot
        got = set(torch.nonzero(scores[layer] < 0).flatten().tolist())
        assert got == expected
        some_deleted |= bool(expected)
        # index order: the reference's sorted(...)[:k] -- lowest index deleted first
        order = scores[layer].argsort()[: len(expected)].tolist()
        assert order == sorted(expected)
    assert some_deleted


def test_ptl_set_logic_and_orders():
    cand = torch.zeros(3, 1, 6, dtype=torch.bool)
    prot = torch.zeros(3, 1, 6, dtype=torch.bool)
    cand[0, 0, [1, 4]] = True  # gate point
    cand[2, 0, [2, 5]] = True  # down input point
    prot[0, 0, 4] = True  # protected at the gate point only
    prot[1, 0, 5] = True  # protected at a point where it is no candidate: still deleted
    deletable = ptl_deletion_set(cand, prot)
    assert deletable[0].tolist() == [False, True, True, False, False, True]
    fallback = torch.tensor([[0.5, 0.9, 0.1, 0.3, 0.2, 0.4]])
    ranked = ptl_scores(deletable, fallback, "rank")[0]
    assert ranked.argsort().tolist() == [2, 5, 1, 4, 3, 0]  # candidates by activation, then the rest
    indexed = ptl_scores(deletable, fallback, "index")[0]
    assert indexed.argsort().tolist() == [1, 2, 5, 4, 3, 0]


def test_bad_method_and_options(batches):
    model, _ = tiny_model("llama")
    with pytest.raises(UserError, match="did you mean 'taylor'"):
        score_mlp(model, "talyor", batches)
    with pytest.raises(UserError, match="options.order: must be one of rank, index, got 'ranked'"):
        score_mlp(model, "ptl", batches, options={"order": "ranked"})
    with pytest.raises(UserError, match="options.top_n"):
        score_mlp(model, "ptl", batches, options={"top_n": 1.5})
    with pytest.raises(UserError, match="options.top_n: must be greater than 0"):
        score_mlp(model, "ptl", batches, options={"top_n": 0})
    with pytest.raises(UserError, match="takes no options"):
        score_mlp(model, "activation", batches, options={"order": "index"})
    with pytest.raises(UserError, match="calibration"):
        score_mlp(model, "activation", [])
    with pytest.raises(UserError, match="calibration text is empty"):
        calibration_batches(tiny_tokenizer(), ["", "  "])


def test_hooks_removed_and_mode_restored_on_error(batches):
    model, _ = tiny_model("llama")
    model.train()
    before = snapshot(model)
    bad = [{"input_ids": torch.full((1, 4), 10_000), "attention_mask": torch.ones(1, 4, dtype=torch.long)}]
    for method in ("activation", "ptl", "taylor"):
        with pytest.raises(IndexError):
            score_mlp(model, method, bad, progress=False)
        assert model.training
        assert_untouched(model, before)
