"""Recover until recovered: stop a tuner's training early once a check on the model says it is back.

The loop's `recovery.allocation: recovered` gives each cut a cap of steps and a check (the held-out loss
back within a tolerance of its pre-cut value); training stops at the first check that passes, and the
steps not spent stay in the run's budget for later cuts. The check runs every `every` optimizer steps,
never after the last one (the cap ends training anyway). Under torchrun every rank runs the check (a
sharded forward needs all of them) and rank 0's answer is the one every rank follows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from transformers import TrainerCallback


@dataclass
class StopWhen:
    check: Callable[[object, int], bool]
    """(model being trained, optimizer steps taken in this call) -> True once recovered."""
    every: int = 5
    """Optimizer steps between checks."""


class StopWhenCallback(TrainerCallback):
    def __init__(self, model, stop: StopWhen):
        self.model, self.stop = model, stop

    def on_step_end(self, args, state, control, **kw):
        step = state.global_step
        if step % self.stop.every or step >= state.max_steps:
            return
        if _agreed(bool(self.stop.check(self.model, step))):
            control.should_training_stop = True


def _agreed(flag: bool) -> bool:
    """Rank 0's flag on every rank (each rank's own where there is no process group)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1 if flag else 0])
    dist.broadcast(t, src=0)
    return bool(t.item())


def callbacks(stop: StopWhen | None, model) -> list:
    return [StopWhenCallback(model, stop)] if stop is not None else []
