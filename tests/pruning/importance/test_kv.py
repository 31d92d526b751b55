"""KV-group scorers: shapes, determinism, no side effects, a group with zeroed o_proj columns ranks lowest."""

import pytest
import torch

from prunetune.builtin.tiny import tiny_model
from prunetune.errors import UserError
from prunetune.pruning.importance import KV_SCORERS, score_kv_groups
from tests.pruning.importance.conftest import assert_untouched, snapshot, zero_kv_group


def test_shapes_determinism_and_no_side_effects(family, batches):
    model, _ = tiny_model(family, hidden_size=96, num_attention_heads=6, num_key_value_heads=3)
    before = snapshot(model)
    for method in KV_SCORERS:
        first = score_kv_groups(model, method, batches, progress=False)
        assert first.shape == (4, 3) and first.dtype == torch.float32
        assert torch.isfinite(first).all() and (first > 0).all(), method
        assert torch.equal(first, score_kv_groups(model, method, batches, progress=False))
        assert_untouched(model, before)


@pytest.mark.parametrize("group", [0, 2])
def test_zeroed_group_ranks_lowest(family, batches, group):
    model, _ = tiny_model(family, hidden_size=96, num_attention_heads=6, num_key_value_heads=3)
    zero_kv_group(model, group)
    scores = score_kv_groups(model, "activation", batches, progress=False)
    assert scores.argmin(dim=1).tolist() == [group] * 4
    assert torch.all(scores[:, group] == 0)


def test_activation_matches_explicit_head_outputs(batches):
    """The Gram-matrix shortcut equals ||x_h W_h^T|| computed the slow way."""
    from prunetune.models import get_adapter

    model, _ = tiny_model("llama", hidden_size=96, num_attention_heads=6, num_key_value_heads=3)
    adapter = get_adapter(model)
    o_proj = adapter.attn_out_linear(adapter.layers(model)[1])
    seen = []
    handle = o_proj.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()) and None)
    try:
        with torch.no_grad():
            for b in batches:
                model(**b)
    finally:
        handle.remove()
    total, tokens = torch.zeros(6), 0.0
    w = o_proj.weight.detach()
    for x, b in zip(seen, batches, strict=True):
        real = b["attention_mask"].reshape(-1).bool()
        x = x.reshape(-1, 6, 16)[real]
        for h in range(6):
            total[h] += (x[:, h] @ w[:, h * 16 : (h + 1) * 16].T).norm(dim=-1).sum()
        tokens += float(real.sum())
    expected = (total / tokens).reshape(3, 2).sum(dim=1)
    got = score_kv_groups(model, "activation", batches, progress=False)[1]
    assert torch.allclose(got, expected, rtol=1e-4)


def test_bad_method(batches):
    model, _ = tiny_model("llama")
    with pytest.raises(UserError, match="did you mean 'activation'"):
        score_kv_groups(model, "activations", batches)
