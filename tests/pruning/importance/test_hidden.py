"""Hidden-channel scorers: dead residual-stream channels score lowest; scoring edits nothing; CLI end to end."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from prunetune.builtin.tiny import tiny_model
from prunetune.pruning.importance import HIDDEN_SCORERS, score_hidden
from prunetune.pruning.select import hidden_count, lowest
from tests.conftest import run_cli
from tests.pruning.importance.conftest import assert_untouched, snapshot
from tests.pruning.test_hidden_surgery import _zero_channels


@pytest.mark.parametrize("site", ["norm_output", "residual"])
def test_activation_finds_channels_nothing_writes_to(family, site, batches):
    model, _ = tiny_model(family)
    dead = [3, 17, 40, 41, 60]
    _zero_channels(model, dead)
    before = snapshot(model)
    scores = score_hidden(model, "activation", batches, progress=False, options={"site": site})
    assert scores.shape == (64,) and torch.isfinite(scores).all()
    assert lowest(scores, len(dead)) == dead
    assert float(scores[dead].max()) == 0.0 and float(scores.min(dim=0).values) == 0.0
    assert_untouched(model, before)


def test_random_is_seeded(batches):
    model, _ = tiny_model("llama")
    a, b = (score_hidden(model, "random", batches, seed=s, progress=False) for s in (1, 1))
    assert torch.equal(a, b) and not torch.equal(a, score_hidden(model, "random", batches, seed=2))
    assert set(HIDDEN_SCORERS.names()) >= {"activation", "random"}


def test_hidden_count_rounds_to_the_nearest_multiple():
    assert hidden_count(64, 0.25) == 16
    assert hidden_count(64, 0.3, round_to=16) == 16  # keep 44.8 -> 48


def test_cli_prune_hidden_fraction(tmp_path, capsys):
    model, tok = tiny_model("qwen3")
    src = tmp_path / "qwen3"
    model.save_pretrained(src)
    tok.save_pretrained(src)
    out = tmp_path / "pruned"
    rc = run_cli("prune", src, "--out", out, "--hidden-fraction", "0.25", "--mlp-fraction", "0.25",
                 "--calibration-samples", "4")
    assert rc == 0
    assert "hidden_size 64 -> 48" in capsys.readouterr().out
    pruned = AutoModelForCausalLM.from_pretrained(out)
    assert (pruned.config.hidden_size, pruned.config.intermediate_size, pruned.config.head_dim) == (48, 72, 16)
    history = json.loads((out / "prunetune_history.json").read_text())
    assert len(history[0]["hidden_channels"]) == 16 and history[0]["meta"]["hidden_importance"] == "activation"
    assert run_cli("inspect", out) == 0
    assert "hidden_size" in capsys.readouterr().out
