"""The gate: does an iteration's evaluation hold against the dense model (or the previous iteration), and
when it does not, the retry with the failed step in two halves (the rollback itself is the loop's)."""

from __future__ import annotations

import logging
from pathlib import Path

from prunetune.loop.evaluation import gate_task_name
from prunetune.loop.planner import Step
from prunetune.loop.recipe import Recipe
from prunetune.loop.runfiles import LoopState

log = logging.getLogger("prunetune.loop")


def gate_value(recipe: Recipe, metrics: dict) -> float | None:
    """The accuracy the gate reads (its task's), None when the recipe gates on nothing."""
    name = gate_task_name(recipe)
    return metrics.get(name, {}).get("accuracy") if name else None


def verdict(recipe: Recipe, metrics: dict, baseline: dict, previous: dict) -> str | None:
    """None when the gate holds, else why it does not."""
    g = recipe.gate
    if g.max_drop is None:
        return None
    ref = gate_value(recipe, baseline if g.against == "dense" else previous)
    now = gate_value(recipe, metrics)
    if ref is None or now is None or ref - now <= g.max_drop:
        return None
    return f"accuracy {now:.3f} is {ref - now:.3f} below the {g.against} {ref:.3f} (max_drop {g.max_drop})"


def retry_smaller(recipe: Recipe, state: LoopState, step: Step) -> bool:
    """Replace the failed step by its two halves in `state.queue` when the gate allows another try."""
    g = recipe.gate
    halves = step.halves(recipe.schedule.round_to)
    if g.on_violation != "rollback" or not halves or state.retries >= g.max_retries:
        return False
    state.retries += 1
    state.rollbacks += 1
    state.queue = [h.to_dict() for h in halves] + state.queue[1:]
    log.info("rolled back; retrying with steps %s", [h.to_dict() for h in halves])
    return True


def best_iteration(recipe: Recipe, iteration_metrics: list[tuple[Path, dict]]) -> Path | None:
    """The accepted iteration with the best gate accuracy (the latest of equals), for `keep: best`."""
    best, best_acc = None, -1.0
    for d, metrics in iteration_metrics:
        acc = gate_value(recipe, metrics)
        if acc is not None and acc >= best_acc:
            best, best_acc = d, acc
    return best
