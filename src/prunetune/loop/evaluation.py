"""The recipe's tasks as the loop uses them: evaluated after every iteration, and as GRPO's prompts and
reward (each built with its recipe options, so evaluation and reward read answers the same way)."""

from __future__ import annotations

import inspect
from pathlib import Path

from prunetune import dist
from prunetune.errors import UserError
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


def reward_task_name(recipe: Recipe) -> str:
    return recipe.recovery.reward_task or recipe.gate.task or recipe.evaluation.tasks[0]


def task_options(recipe: Recipe, name: str, *, reward: bool = False) -> dict:
    """Constructor options of evaluation task `name` (or of the GRPO reward task): its task_options, with
    evaluation.think / enable_thinking for tasks that take them (a task's own options win)."""
    from prunetune.tasks import TASKS, gym_names
    from prunetune.tasks.gym import GymTask

    e, r = recipe.evaluation, recipe.recovery
    opts = dict((r.reward_task_options if reward else None) or e.task_options.get(name, {}))
    cls = TASKS.get(name) if name in TASKS else (GymTask if name in gym_names() else None)
    takes = set(inspect.signature(GymTask if isinstance(cls, type) and issubclass(cls, GymTask) else cls).parameters
                ) if cls is not None else set()
    if "think" in takes and "think" not in opts and e.think != "auto":
        opts["think"] = e.think
    if "enable_thinking" in takes and "enable_thinking" not in opts and e.enable_thinking is not None:
        opts["enable_thinking"] = e.enable_thinking
    return opts


def check_thinking_switch(recipe: Recipe, tasks: list) -> None:
    """enable_thinking against the model's chat template, before anything is written (needs the tokenizer)."""
    tasks = [t for t in tasks if getattr(getattr(t, "reasoning", None), "enable_thinking", None) is not None]
    if not tasks:
        return
    from prunetune.checkpoint import checkpoint_dir, load_model

    path = checkpoint_dir(recipe.model)
    if path is not None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path)
    else:
        tok = load_model(recipe.model)[1]
    for t in tasks:
        try:
            t.reasoning.bind(tok)
        except UserError as e:
            own = "enable_thinking" in recipe.evaluation.task_options.get(t.name, {})
            key = f"evaluation.task_options.{t.name}" if own else "evaluation.enable_thinking"
            raise UserError(f"{key}: {e}".replace("task option enable_thinking: ", "")) from None


def gate_task_name(recipe: Recipe) -> str | None:
    return recipe.gate.task or (recipe.evaluation.tasks[0] if recipe.evaluation.tasks else None)
