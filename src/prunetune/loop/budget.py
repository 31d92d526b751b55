"""Where the loop spends: how big each MLP cut is (by measured damage) and how many recovery steps it gets.

The damage of a cut is the rise of next-token loss on held-out text (pruning/damage.py); how the steps
are shared out is the recipe's allocation (loop/allocations/, one module each).
"""

from __future__ import annotations

import math

from prunetune.loop.allocations import Budget, build_allocation


def choose_cut(candidates: list[int], losses: list[float], before: float, max_damage: float) -> tuple[int, float]:
    """(neurons, damage): the largest candidate whose loss rise stays within `max_damage`, else the smallest.

    `candidates` run largest first, `losses` are the held-out losses with each cut applied.
    """
    for k, loss in zip(candidates, losses):
        if loss - before <= max_damage:
            return k, loss - before
    return candidates[-1], losses[-1] - before


def future_cuts(remaining_after: int, this_cut: int, iterations_left: int) -> int:
    """How many more MLP cuts a damage-sized schedule expects: the rest at this cut's size, capped."""
    if remaining_after <= 0 or this_cut <= 0:
        return 0
    return min(iterations_left, math.ceil(remaining_after / this_cut))


def allocate(total: int, spent: int, damage: float, rest: float, n_future: int, how: str = "damage",
             min_share: float = 0.0, final_share: float = 0.0, growth: float = 3.0) -> int:
    """Optimizer steps for this iteration out of what is left of `total` (`spent` so far), by the
    registered allocation `how` (loop/allocations/): `damage` this cut's measured damage, `rest` the
    measured damage of the cuts to come, `n_future` how many cuts follow (0: the last gets what is left)."""
    options = {"growth": growth} if how == "geometric" else None
    return build_allocation(how, options).steps(
        Budget(total, spent, n_future, damage=damage, rest=rest, min_share=min_share, final_share=final_share))


def planned_steps(r, iterations: int) -> list[int] | None:
    """Steps per iteration where the recipe's allocation fixes them before any measurement (its entry is
    `up_front`: split, equal, geometric, without rollbacks); None where measured damage or recovery
    decides (damage, recovered), or where no total_steps is given."""
    allocation = r.allocator()
    if not allocation.up_front or not r.total_steps:
        return None
    out: list[int] = []
    for i in range(iterations):
        out.append(allocation.steps(Budget(r.total_steps, sum(out), iterations - 1 - i, iteration=i + 1,
                                           min_share=r.min_share, final_share=r.final_share)))
    return out


def records_for(steps: int, chunk_size: int, max_steps: int) -> int:
    """Records a recovery of `steps` steps takes when `chunk_size` records were sized for `max_steps`."""
    return max(1, math.ceil(chunk_size * steps / max_steps))
