"""split: the steps of every iteration written by hand, e.g. [5, 10, 25, 80]."""

from __future__ import annotations

from dataclasses import dataclass

from prunetune.errors import UserError
from prunetune.loop.allocations.base import ALLOCATIONS, Budget, Context, StopAt

KEY = "recovery.split (allocation_options.steps)"


@dataclass
class SplitOptions:
    steps: list[int] | None = None
    """Optimizer steps per iteration, e.g. [5, 10, 25, 80]: one per iteration, summing to recovery.total_steps."""


@ALLOCATIONS.register("split", options=SplitOptions)
class Split:
    """the steps `steps` names for each iteration, by hand"""

    measures = frozenset()
    up_front = True

    def __init__(self, options: SplitOptions | None = None):
        self.options = options or SplitOptions()

    def steps(self, b: Budget) -> int:
        return self.options.steps[b.iteration - 1]

    def stop(self, b: Budget) -> StopAt | None:
        return None

    def check(self, ctx: Context) -> None:
        steps = self.options.steps
        if steps is None:
            raise UserError("recovery.split and recovery.allocation: split go together "
                            "(give the steps as recovery.allocation_options.steps)")
        if ctx.min_share or ctx.final_share:
            raise UserError("recovery.split sets every iteration's steps itself: drop min_share / final_share")
        if ctx.damage_sized or len(steps) != ctx.iterations or min(steps) < 1:
            raise UserError(f"{KEY}: give {ctx.iterations} step counts >= 1, one per iteration "
                            "(schedule.shape damage decides its own iterations: use allocation: damage)")
        if ctx.total_steps != sum(steps):
            raise UserError(f"recovery.split sums to {sum(steps)}; recovery.total_steps is {ctx.total_steps}")
