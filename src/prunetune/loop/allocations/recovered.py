"""recovered: each cut trains until its held-out loss is back within `tolerance` of the pre-cut loss.

Its steps are a cap (all that the later cuts' floors and the final share leave); training stops at
the first check that passes (recovery/until.py), and what it did not spend stays for the later cuts.
The last cut gets what is left and trains it all.
"""

from __future__ import annotations

from dataclasses import dataclass

from prunetune.config import bounded
from prunetune.errors import UserError
from prunetune.loop.allocations.base import ALLOCATIONS, LOSS, Budget, Context, StopAt, spread


@dataclass
class RecoveredOptions:
    tolerance: float = bounded(0.0, ge=0.0, le=1000.0)
    """Nats per token above the pre-cut held-out loss that count as recovered."""
    check_every: int = bounded(5, ge=1)
    """Optimizer steps between held-out loss checks."""


@ALLOCATIONS.register("recovered", options=RecoveredOptions)
class Recovered:
    """each cut trains until its held-out loss is back within `tolerance` of the pre-cut loss, capped"""

    measures = frozenset({LOSS})
    up_front = False

    def __init__(self, options: RecoveredOptions | None = None):
        self.options = options or RecoveredOptions()

    def steps(self, b: Budget) -> int:
        return spread(b, 1.0)

    def stop(self, b: Budget) -> StopAt | None:
        if b.n_future <= 0 or b.before is None:
            return None
        return StopAt(b.before + self.options.tolerance, self.options.check_every)

    def check(self, ctx: Context) -> None:
        if ctx.total_steps is None:
            raise UserError("recovery.allocation: recovered needs recovery.total_steps (the budget it caps)")
