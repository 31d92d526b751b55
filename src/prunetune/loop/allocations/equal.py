"""equal: what is left split evenly over this cut and the cuts to come."""

from __future__ import annotations

from prunetune.loop.allocations.base import ALLOCATIONS, Budget, Context, StopAt, spread


@ALLOCATIONS.register("equal")
class Equal:
    """equal shares of what is left"""

    measures = frozenset()
    up_front = True

    def steps(self, b: Budget) -> int:
        return spread(b, 1.0 / (b.n_future + 1))

    def stop(self, b: Budget) -> StopAt | None:
        return None

    def check(self, ctx: Context) -> None:
        return None
