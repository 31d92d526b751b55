"""Recover until recovered: training stops at the first passing check, never checks after the last step."""

import pytest

from prunetune.builtin.tiny import tiny_model
from prunetune.recovery import StopWhen, recover
from tests.recovery.helpers import MEMO, TEMPLATE, lm_loss

FAST = {"learning_rate": 3e-3, "warmup_ratio": 0.0, "max_length": 32, "per_device_train_batch_size": 4}


def _recover(tmp_path, stop, steps=12):
    model, tok = tiny_model("llama")
    return recover(model, tok, "cpt", MEMO, {**FAST, "template": TEMPLATE, "max_steps": steps},
                   work_dir=tmp_path, progress=False, stop=stop), model, tok


@pytest.mark.parametrize("passes_at", [3, 6, None])
def test_training_stops_at_the_first_passing_check(tmp_path, passes_at):
    seen = []

    def check(model, step):
        seen.append(step)
        return passes_at is not None and step >= passes_at

    res, _, _ = _recover(tmp_path, StopWhen(check, every=3))
    assert res.steps == (passes_at or 12)
    assert seen == list(range(3, (passes_at or 9) + 1, 3))  # every 3 steps; none at the cap itself


def test_a_loss_check_sees_the_model_being_trained(tmp_path):
    """The check reads the live weights: a loss target the run reaches stops it before the cap."""
    texts = [TEMPLATE.format(**r) for r in MEMO]
    model0, tok = tiny_model("llama")
    start = lm_loss(model0, tok, texts)
    losses = []

    def check(model, step):
        losses.append(lm_loss(model, tok, texts))
        model.train()
        return losses[-1] < 0.8 * start

    res, model, _ = _recover(tmp_path, StopWhen(check, every=2), steps=30)
    assert 2 <= res.steps < 30 and res.steps == 2 * len(losses)
    assert losses[-1] < 0.8 * start and all(x >= 0.8 * start for x in losses[:-1])


@pytest.mark.parametrize("method", ["sft", "distill", "grpo"])
def test_every_tuner_stops_when_told(tmp_path, method):
    """The stop rides on fit()'s callbacks, so trl's GRPO trainer honours it like the Trainer subclasses."""
    from tests.recovery.helpers import PAIRS

    model, tok = tiny_model("llama")
    cfg = {"max_steps": 6, "warmup_ratio": 0.0, "per_device_train_batch_size": 4}
    records, extra = PAIRS, {}
    if method == "grpo":
        cfg |= {"max_completion_length": 4, "per_device_train_batch_size": 8}
        records = [{"prompt": "Q:"}, {"prompt": "A:"}]
        extra = {"reward_funcs": lambda prompts, completions, **kw: [float(len(c)) for c in completions]}
    if method == "distill":
        records, extra = [{"text": TEMPLATE.format(**r)} for r in MEMO], {"teacher": tiny_model("llama")[0]}
        cfg["max_length"] = 32
    res = recover(model, tok, method, records, cfg, work_dir=tmp_path, progress=False,
                  stop=StopWhen(lambda m, step: step >= 2, every=1), **extra)
    assert res.steps == 2
