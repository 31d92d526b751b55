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
    return cls(**options)


__all__ = ["TASKS", "Example", "Task", "get_task", "grpo_records", "gym_names", "reward_function"]
