"""The recipe's tasks as the loop uses them: evaluated after every iteration, and as GRPO's prompts and
reward (each built with its recipe options, so evaluation and reward read answers the same way)."""

from __future__ import annotations

from pathlib import Path

from prunetune import dist
from prunetune.loop.planner import reward_task_name, task_options
from prunetune.loop.recipe import Recipe


def evaluate_recipe(recipe: Recipe, model, tok, out_dir: Path | None, *, model_dir=None, progress=True) -> dict:
    """task -> metrics for every `evaluation.tasks` entry; predictions under `out_dir` (rank 0 only)."""
    from prunetune.tasks import get_task
    from prunetune.tasks.evaluate import evaluate

    e = recipe.evaluation
    results = {}
    for name in e.tasks:
        task = get_task(name, **task_options(recipe, name))
        r = evaluate(model, tok, task, limit=e.limit, max_new_tokens=e.max_new_tokens, batch_size=e.batch_size,
                     seed=recipe.seed, out_dir=out_dir if dist.is_main() else None, progress=progress,
                     backend=e.backend, model_dir=model_dir)
        results[name] = r["metrics"]
    return results


def grpo_data(recipe: Recipe, tok, size: int, seed: int):
    """`size` GRPO prompts of the reward task (train split) and its reward function."""
    from prunetune.tasks import get_task, grpo_records, reward_function

    r = recipe.recovery
    name = reward_task_name(recipe)
    task = get_task(name, **task_options(recipe, name, reward=True))
    examples = task.examples(split="train", limit=size, seed=seed)
    reward = reward_function(task, r.correctness_weight, r.format_weight, examples)
    return grpo_records(task, examples, tok), [reward]
