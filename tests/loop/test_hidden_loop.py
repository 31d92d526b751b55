"""The loop cuts hidden channels on schedule, carries the optimizer through the cut, and writes a stock model."""

import torch
from transformers import AutoModelForCausalLM

from prunetune.loop import run
from tests.loop.test_loop import _recipe


def test_schedule_hidden_in_the_loop(tmp_path):
    recipe = _recipe(tmp_path, "schedule.hidden.1=16", "recovery.carry_optimizer=true")
    run(recipe, progress=False)
    final = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "final")
    c = final.config
    assert (c.hidden_size, c.num_key_value_heads, c.head_dim) == (48, 1, 16)
    assert torch.isfinite(final(torch.tensor([[5, 6, 7]])).logits).all()
