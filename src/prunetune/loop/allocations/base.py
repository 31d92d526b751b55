"""What an allocation is: a registered way to spend `recovery.total_steps` over the cuts, and the
arithmetic every share-based one uses (floors, the final polish, the last cut takes what is left).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from prunetune.registry import Registry

ALLOCATIONS = Registry("allocation")
"""name -> an Allocation class, constructed with its options dataclass (or with no arguments)."""

LOSS, REST = "loss", "rest"
"""What an allocation may ask the loop to measure: LOSS, the held-out loss before and after each cut
(its damage); REST, the damage of removing at once everything the later cuts will remove."""


@dataclass(frozen=True)
class Budget:
    """Where the run's budget stands when one cut's recovery is sized: what an allocation reads."""

    total: int
    """recovery.total_steps."""
    spent: int
    """Optimizer steps spent so far (rolled-back attempts included)."""
    n_future: int
    """Cuts still to come after this one (0: this is the last, it gets what is left)."""
    iteration: int = 1
    """This cut's 1-based iteration."""
    damage: float | None = None
    """This cut's measured damage (held-out loss rise), when the allocation measures LOSS."""
    rest: float | None = None
    """The measured damage of the cuts to come, seen from here, when the allocation measures REST."""
    before: float | None = None
    """The held-out loss before this cut, when the allocation measures LOSS."""
    min_share: float = 0.0
    final_share: float = 0.0


@dataclass(frozen=True)
class StopAt:
    """Stop this cut's recovery early once the held-out loss is at or below `loss` (checked every `every` steps)."""

    loss: float
    every: int


@dataclass(frozen=True)
class Context:
    """The recipe facts an allocation's `check` may need (the allocation module imports no recipe)."""

    total_steps: int | None
    iterations: int
    min_share: float
    final_share: float
    damage_sized: bool
    """schedule.shape is damage: the run decides its own cuts as it goes."""
    global_schedule: bool = False
    """recovery.global_schedule: one learning-rate schedule for the run."""


class Allocation(Protocol):
    """One way to spend the budget. Register with `@ALLOCATIONS.register("name", options=Options)`;
    the class is built with its options (an instance of `Options`), or with no arguments."""

    measures: frozenset[str]
    """What the loop must measure for it (LOSS, REST): a run whose allocation reads no damage skips it."""
    up_front: bool
    """Its steps follow from the recipe alone (no measurement): `plan` and the cost planner print them."""

    def steps(self, b: Budget) -> int:
        """Optimizer steps for this cut (at least 1; the last cut gets what is left)."""

    def stop(self, b: Budget) -> StopAt | None:
        """Stop this cut's recovery early at a held-out loss, or None (train the steps given)."""

    def check(self, ctx: Context) -> None:
        """Raise UserError naming the key when the recipe cannot use this allocation."""


def spread(b: Budget, share: float) -> int:
    """`share` of what is left for this cut, after the future cuts' floors and the final share are kept back."""
    left = max(b.total - b.spent, 0)
    if b.n_future <= 0:
        return max(left, 1)
    left = max(left - round(b.final_share * b.total), b.n_future + 1)
    floor = max(1, round(b.min_share * b.total))
    return max(1, min(max(round(left * share), floor), left - b.n_future * floor))


def build_allocation(name: str, options: dict | None = None, key: str = "recovery.allocation_options"):
    """The registered allocation `name` built with `options` (checked against its options dataclass)."""
    from prunetune.config import build
    from prunetune.errors import UserError

    entry = ALLOCATIONS.entry(name)
    if entry.options is None:
        if options:
            raise UserError(f"{key}: allocation '{name}' takes no options, got {', '.join(options)}")
        return entry.obj()
    return entry.obj(build(entry.options, options or {}, key))


def options_dict(name: str, options: dict | None, key: str = "recovery.allocation_options") -> dict:
    """`options` checked and completed with defaults (what the resolved recipe saves)."""
    from dataclasses import asdict

    from prunetune.config import build

    entry = ALLOCATIONS.entry(name)
    if entry.options is None:
        build_allocation(name, options, key)
        return {}
    return asdict(build(entry.options, options or {}, key))
