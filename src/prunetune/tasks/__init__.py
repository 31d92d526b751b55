"""Tasks selected by name: examples + prompt + score, where the score doubles as the GRPO reward.

TASKS maps a name to a factory(**options) -> Task. Factories import their module lazily so the
registry (and `prunetune --help`) stays cheap. Any reasoning-gym dataset name also works.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from prunetune.errors import UserError, did_you_mean
from prunetune.tasks.base import Example, Task


def _lazy(target: str) -> Callable[..., Task]:
    """A factory that imports `module:Class` on first use."""
    module, cls = target.split(":")

    def factory(**options) -> Task:
        return getattr(importlib.import_module(module), cls)(**options)

    factory.__qualname__ = factory.__name__ = cls
    return factory


TASKS: dict[str, Callable[..., Task]] = {
    "gsm8k": _lazy("prunetune.tasks.gsm8k:GSM8K"),
    "gsm_symbolic": _lazy("prunetune.tasks.gym:GSMSymbolic"),
    "math": _lazy("prunetune.tasks.math_task:MathTask"),
    "humaneval": _lazy("prunetune.tasks.code:HumanEval"),
    "mbpp": _lazy("prunetune.tasks.code:MBPP"),
    "perplexity": _lazy("prunetune.tasks.perplexity:Perplexity"),
    "arith": _lazy("prunetune.tasks.arith:ArithTask"),
}


def gym_names() -> list[str]:
    """Names of every installed reasoning-gym dataset (empty when the package is missing)."""
    try:
        from reasoning_gym.factory import DATASETS
    except ImportError:
        return []
    return sorted(DATASETS)


def get_task(name: str, **options) -> Task:
    """Build a task by name; an unknown name is a UserError with a did-you-mean suggestion."""
    if isinstance(name, str) and name in TASKS:
        return TASKS[name](**options)
    if name in gym_names():
        from prunetune.tasks.gym import GymTask

        return GymTask(dataset=name, **options)
    choices = list(TASKS) + gym_names()
    raise UserError(
        f"unknown task '{name}'{did_you_mean(name, choices)}; built in: {', '.join(TASKS)} "
        "(or any reasoning-gym dataset name)"
    )


def __getattr__(attr):  # reward helpers live in their own module; import on demand
    if attr in ("reward_function", "grpo_records"):
        from prunetune.tasks import reward

        return getattr(reward, attr)
    raise AttributeError(attr)


__all__ = ["TASKS", "Example", "Task", "get_task", "gym_names", "reward_function", "grpo_records"]
