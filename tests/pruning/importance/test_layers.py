"""Layer scorers: a layer made an identity (o_proj and down_proj zeroed) ranks lowest; no side effects."""

import pytest
import torch

from prunetune.builtin.tiny import tiny_model
from prunetune.errors import UserError
from prunetune.pruning.importance import LAYER_SCORERS, score_layers
from tests.pruning.importance.conftest import assert_untouched, identity_layer_params, snapshot

IDENTITY = 2


def _identity_model(family, batches, steps: int = 0):
    """A tiny model whose layer IDENTITY is an identity, optionally trained a few steps with it held at zero.

    skip_loss needs a model whose layers help: skipping a layer of a random model often LOWERS the loss,
    so an identity layer (skip delta exactly 0) is only the least useful once the others learnt something.
    """
    model, _ = tiny_model(family)
    zeroed = identity_layer_params(model, IDENTITY)
    with torch.no_grad():
        for p in zeroed:
            p.zero_()
    if steps:
        for p in zeroed:
            p.requires_grad_(False)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        model.train()
        for _ in range(steps):
            for b in batches:
                labels = b["input_ids"].masked_fill(b["attention_mask"] == 0, -100)
                model(**b, labels=labels).loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
        model.eval()
        for p in zeroed:
            p.requires_grad_(True)
    return model


def test_block_influence_identity_layer_lowest(family, batches):
    model = _identity_model(family, batches)
    before = snapshot(model)
    scores = score_layers(model, "block_influence", batches, progress=False)
    assert scores.shape == (4,) and scores.dtype == torch.float32
    assert scores.argmin().item() == IDENTITY
    assert scores[IDENTITY].abs() < 1e-6
    assert torch.equal(scores, score_layers(model, "block_influence", batches, progress=False))
    assert_untouched(model, before)


def test_skip_loss_identity_layer_lowest(family, batches):
    model = _identity_model(family, batches, steps=30)
    before = snapshot(model)
    scores = score_layers(model, "skip_loss", batches, progress=False)
    assert scores.shape == (4,)
    assert scores[IDENTITY].abs() < 1e-6  # skipping an identity changes nothing
    assert scores.argmin().item() == IDENTITY, scores
    assert_untouched(model, before)


def test_bad_method(batches):
    model, _ = tiny_model("llama")
    with pytest.raises(UserError, match="did you mean 'skip_loss'"):
        score_layers(model, "skiploss", batches)
    assert LAYER_SCORERS.names() == ["block_influence", "skip_loss"]
