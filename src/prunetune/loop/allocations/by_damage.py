"""damage: each cut's steps in proportion to its measured damage against the damage still to come.

FINDINGS 9 / bench: at a fixed budget, what decides gradual compaction is giving the most damaging cut
the most recovery. `rest` (the damage of removing, from the model as it now is, everything the later
cuts will remove) keeps budget back for the late cuts of a tight model, which hurt most.
"""

from __future__ import annotations

from prunetune.loop.allocations.base import ALLOCATIONS, LOSS, REST, Budget, Context, StopAt, spread

MIN_DAMAGE = 1e-3
"""A cut that measurably did no harm still gets a share (and a loss that fell is not a negative share)."""


@ALLOCATIONS.register("damage")
class Damage:
    """in proportion to each cut's measured damage (held-out loss rise) against the damage still to come"""

    measures = frozenset({LOSS, REST})
    up_front = False

    def steps(self, b: Budget) -> int:
        d = max(b.damage or 0.0, MIN_DAMAGE)
        return spread(b, d / (d + max(b.rest or 0.0, MIN_DAMAGE)))

    def stop(self, b: Budget) -> StopAt | None:
        return None

    def check(self, ctx: Context) -> None:
        return None
