"""geometric: each cut `growth` times the steps of the one before (back-loaded, for any total).

3 over 4 cuts of 120 gives 3/9/27/81; the results it was chosen by are in
bench/results/gradual_vs_oneshot_sft_keep0.35_seeds8.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from prunetune.config import bounded
from prunetune.loop.allocations.base import ALLOCATIONS, Budget, Context, StopAt, spread


@dataclass
class GeometricOptions:
    growth: float = bounded(3.0, gt=0.0, le=100.0)
    """The steps of each iteration over the one before's (1 = equal shares; 3 over 4 cuts of 120 gives 3/9/27/81;
    bench/results/gradual_vs_oneshot_sft_keep0.35_seeds8.md compares the factors)."""


@ALLOCATIONS.register("geometric", options=GeometricOptions)
class Geometric:
    """each iteration `growth` times the steps of the one before: back-loaded, the last cut the most"""

    measures = frozenset()
    up_front = True

    def __init__(self, options: GeometricOptions | None = None):
        self.options = options or GeometricOptions()

    def steps(self, b: Budget) -> int:
        return spread(b, 1.0 / sum(self.options.growth**j for j in range(b.n_future + 1)))

    def stop(self, b: Budget) -> StopAt | None:
        return None

    def check(self, ctx: Context) -> None:
        return None
