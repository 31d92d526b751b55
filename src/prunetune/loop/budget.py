"""Where the loop spends: how big each MLP cut is (by measured damage) and how many recovery steps it gets.

FINDINGS 9 / bench: at a fixed budget, what decides gradual compaction is giving the most damaging cut the
most recovery. The damage of a cut is the rise of next-token loss on held-out text (pruning/damage.py).
"""

from __future__ import annotations

import math

MIN_DAMAGE = 1e-3
"""A cut that measurably did no harm still gets a share (and a loss that fell is not a negative share)."""


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
    """Optimizer steps for this iteration out of what is left of `total` (`spent` so far).

    `damage`: this cut's measured damage; `rest`: the measured damage of removing, from the model as it
    now is, everything the later cuts will remove (the cuts to come, seen from here: late cuts of a tight
    model hurt most, so they must find budget left); `n_future`: how many cuts follow. The last cut gets
    everything left (the final polish). "equal" splits what is left evenly over this and the future cuts.
    `min_share`: every cut gets at least this share of `total` (the future cuts' floors are kept back), so
    the middle cuts, small next to what is still to come, are not starved. `final_share`: this share of
    `total` is kept for the last cut whatever the damages say (the final polish). "recovered" returns the
    cap: all that the future cuts' floors and the final share leave (training stops earlier once the cut is
    recovered, recovery/until.py). "geometric" gives each cut `growth` times the steps of the one before
    (back-loaded: 3 over 4 cuts of 120 gives 3/9/27/81, which beat one-shot at 34% kept on 7 of 8 seeds;
    bench/results/gradual_vs_oneshot_sft_keep0.35_seeds8.md). At least one step each.
    """
    left = max(total - spent, 0)
    if n_future <= 0:
        return max(left, 1)
    left = max(left - round(final_share * total), n_future + 1)
    if how == "equal":
        share = 1.0 / (n_future + 1)
    elif how == "recovered":
        share = 1.0
    elif how == "geometric":
        share = 1.0 / sum(growth**j for j in range(n_future + 1))
    else:
        d = max(damage, MIN_DAMAGE)
        share = d / (d + max(rest, MIN_DAMAGE))
    floor = max(1, round(min_share * total))
    return max(1, min(max(round(left * share), floor), left - n_future * floor))


def planned_steps(r, iterations: int) -> list[int] | None:
    """Steps per iteration where the recipe's recovery fixes them before any measurement (split, equal,
    geometric, without rollbacks); None where measured damage or recovery decides (damage, recovered)."""
    if r.split:
        return list(r.split)
    if r.allocation not in ("equal", "geometric") or not r.total_steps:
        return None
    out: list[int] = []
    for i in range(iterations):
        out.append(allocate(r.total_steps, sum(out), 0.0, 0.0, iterations - 1 - i, r.allocation, r.min_share,
                            r.final_share, r.growth))
    return out


def records_for(steps: int, chunk_size: int, max_steps: int) -> int:
    """Records a recovery of `steps` steps takes when `chunk_size` records were sized for `max_steps`."""
    return max(1, math.ceil(chunk_size * steps / max_steps))
