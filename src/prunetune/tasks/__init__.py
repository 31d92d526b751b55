"""Tasks selected by name: examples + prompt + score, where the score doubles as the GRPO reward.

Each task class registers itself in TASKS (task.py) and is built with its options as keyword
arguments. Any reasoning-gym dataset name also works. Generation (generation.py) and the sandbox that
runs generated code (sandbox.py) live here too: only tasks use them.
"""

from __future__ import annotations

import inspect

from prunetune.errors import UserError, did_you_mean
from prunetune.tasks import code, gsm8k, gym, math_task, perplexity  # noqa: F401  (register the tasks)
from prunetune.tasks.reward import grpo_records, reward_function
from prunetune.tasks.task import TASKS, Example, Task


def gym_names() -> list[str]:
    """Names of every installed reasoning-gym dataset (empty when the package is missing)."""
    try:
        from reasoning_gym.factory import DATASETS
    except ImportError:
        return []
    return sorted(DATASETS)


def get_task(name: str, **options) -> Task:
    """Build a task by name; an unknown name or option is a UserError naming it."""
    if isinstance(name, str) and name not in TASKS and name in gym_names():
        cls, options = gym.GymTask, {"dataset": name, **options}
    elif isinstance(name, str) and name in TASKS:
        cls = TASKS.get(name)
    else:
        choices = TASKS.names() + gym_names()
        raise UserError(
            f"unknown task '{name}'{did_you_mean(name, choices)}; built in: {', '.join(TASKS.names())} "
            "(or any reasoning-gym dataset name)"
        )
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as e:
        raise UserError(f"task '{name}' does not take that option: {e}") from None
    return cls(**typed_options(cls, name, options))


OPTION_BOUNDS = {
    "size": {"ge": 1, "le": 10_000_000},
    "workers": {"ge": 1, "le": 256},
    "timeout": {"gt": 0.0, "le": 3600.0},
    "num_fewshot": {"ge": 0, "le": 8},
    "distractor_prob": {"ge": 0.0, "le": 1.0},
    "max_length": {"ge": 2, "le": 1_048_576},
    "min_steps": {"ge": 1, "le": 1000},
    "max_steps": {"ge": 1, "le": 1000},
    "max_number": {"ge": 1},
}
"""Bounds of task options by name (any other integer or float option: at least 0, and the config's limits)."""


def task_options(cls) -> list[tuple[str, object, object, dict]]:
    """(name, type, default, bounds) of each option a task class takes (its __init__ keywords)."""
    import typing

    hints = typing.get_type_hints(cls.__init__)
    out = []
    for p in list(inspect.signature(cls).parameters.values()):
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        out.append((p.name, hints.get(p.name, typing.Any), p.default, OPTION_BOUNDS.get(p.name, {"ge": 0})))
    return out


def typed_options(cls, name: str, options: dict) -> dict:
    """`options` coerced by the task's own annotations and checked against their bounds, with the same
    rules as every config key (`min_steps=abc`, `size=0`, `chat=maybe` name the option); options a task
    passes on untyped (reasoning-gym's dataset config) stay as given."""
    from prunetune.config import _check_bounds, _check_limits, coerce

    known = {n: (tp, bounds) for n, tp, _, bounds in task_options(cls)}
    out = {}
    for key, value in options.items():
        label = f"task '{name}' option {key}"
        if key not in known:
            out[key] = value
            _check_limits(value, label)
            continue
        tp, bounds = known[key]
        v = coerce(value, tp, label)
        out[key] = _check_bounds(v, bounds if isinstance(v, int | float) else {}, label)
        _check_limits(out[key], label, bounds)
    return out


__all__ = ["TASKS", "Example", "Task", "get_task", "grpo_records", "gym_names", "reward_function"]
