"""Layer-by-layer scoring gives the whole-model scores, on every family; scorers that cannot refuse it."""

import pytest
import torch

from prunetune.builtin.tiny import tiny_model
from prunetune.errors import UserError
from prunetune.pruning.importance import (
    Layerwise,
    calibration_batches,
    score_kv_groups,
    score_layers,
    score_mlp,
)
from tests.pruning.importance.conftest import GENERAL, assert_untouched, snapshot


def _both(fn, *args, **kwargs):
    return fn(*args, progress=False, **kwargs), fn(*args, progress=False, layerwise=True, **kwargs)


def test_layerwise_scores_equal_the_whole_model_pass(family, batches, monkeypatch):
    """Padded batches of different lengths; every forward scorer, ptl with general text too."""
    from prunetune.builtin.tokenizer import tiny_tokenizer
    from prunetune.pruning.importance import layerwise

    passes = []
    embed = layerwise._embed
    monkeypatch.setattr(layerwise, "_embed", lambda *a: passes.append(1) or embed(*a))
    model, _ = tiny_model(family)
    before = snapshot(model)
    general = calibration_batches(tiny_tokenizer(), GENERAL, max_length=32, batch_size=2)
    pairs = {
        "mlp activation": _both(score_mlp, model, "activation", batches),
        "mlp ptl": _both(score_mlp, model, "ptl", batches, general_batches=general, options={"top_n": 0.5}),
        "kv activation": _both(score_kv_groups, model, "activation", batches),
        "block influence": _both(score_layers, model, "block_influence", batches),
    }
    for name, (full, lw) in pairs.items():
        assert full.shape == lw.shape, name
        torch.testing.assert_close(lw, full, rtol=1e-5, atol=1e-6, msg=name)
    assert pairs["mlp activation"][0].abs().sum() > 0
    assert len(passes) == 5  # the layer-by-layer path ran (ptl: reasoning and general passes)
    assert_untouched(model, before)


@pytest.mark.parametrize(
    "fn, method", [(score_mlp, "taylor"), (score_kv_groups, "taylor"), (score_layers, "skip_loss")]
)
def test_whole_model_scorers_refuse_layerwise(fn, method, batches):
    model, _ = tiny_model("llama")
    with pytest.raises(UserError, match=r"prune\.layerwise: the .* '" + method + r"' .*; turn prune\.layerwise off"):
        fn(model, method, batches, progress=False, layerwise=True)


def test_layerwise_from_disk_reads_one_layer_at_a_time(tmp_path, batches):
    """The layers start on the meta device and are read from the checkpoint for their turn only."""
    from accelerate import init_empty_weights
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model, _ = tiny_model("qwen2")
    model.save_pretrained(tmp_path)
    full = score_mlp(model, "activation", batches, progress=False)
    with init_empty_weights(include_buffers=False):
        empty = AutoModelForCausalLM.from_config(model.config)
    state = {k: v for k, v in load_file(tmp_path / "model.safetensors").items() if ".layers." not in k}
    empty.load_state_dict(state, strict=False, assign=True)
    empty.tie_weights()
    empty.eval()
    lw = score_mlp(empty, "activation", batches, progress=False, layerwise=Layerwise(checkpoint=str(tmp_path)))
    torch.testing.assert_close(lw, full, rtol=1e-5, atol=1e-6)
    assert all(p.is_meta for p in empty.model.layers.parameters())


def test_a_layerwise_step_cuts_what_the_whole_model_step_cuts(batches):
    """prune.layerwise reaches every scorer the step runs; a recipe asking taylor layer-wise fails its check."""
    from prunetune.pruning.prune import StepSpec, check_spec, decide

    model, _ = tiny_model("gemma2")
    spec = dict(mlp_neurons=16, kv_groups=1, layers=1)
    whole = decide(model, StepSpec(**spec), batches, progress=False)
    lw = decide(model, StepSpec(**spec, layerwise=True), batches, progress=False)
    assert lw.to_dict() == whole.to_dict()
    with pytest.raises(UserError, match=r"prune\.layerwise: the KV-group scorer 'taylor'"):
        check_spec(StepSpec(kv_importance="taylor", layerwise=True))
