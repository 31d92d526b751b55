"""A task's score as a TRL reward function, and the GRPO dataset records that go with it.

TRL's GRPOTrainer calls each reward function as
`fn(prompts=..., completions=..., completion_ids=..., **columns)` where `columns` are the dataset's
other columns (one value per completion) plus trainer_state / log_extra / log_metric; completions
are strings, or lists of chat messages for conversational datasets. The `example_id` column finds
the Example, so the reward is exactly the evaluation score.
"""

from __future__ import annotations

from collections.abc import Callable

from prunetune.tasks.task import Example, Task


def completion_text(completion) -> str:
    """A completion as text: strings as is; chat messages -> the content of the last message."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        if isinstance(content, list):  # multimodal-style [{"type": "text", "text": ...}]
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return str(content)
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    return str(completion)


def grpo_records(task: Task, examples: list[Example], tokenizer) -> list[dict]:
    """Dataset rows for GRPOTrainer: the task's prompt (template applied), the example id and target."""
    return [
        {"prompt": task.build_prompt(e, tokenizer), "example_id": e.id, "target": e.target} for e in examples
    ]


def reward_function(
    task: Task,
    correctness_weight: float = 0.9,
    format_weight: float = 0.1,
    examples: list[Example] | None = None,
) -> Callable[..., list[float]]:
    """reward = correctness_weight * task.score + format_weight * task.format_ok, per completion.

    `examples` are the ones the rows were built from (grpo_records): the reward scores against them by
    id. Rows of other examples are scored against their `target` column, or found with the task's
    `get_example` when it has one. The index lives and dies with this function (one per recovery).
    """
    index = {e.id: e for e in examples or []}

    def reward(prompts: list, completions: list, **columns) -> list[float]:
        ids = columns.get("example_id")
        if ids is None:
            raise ValueError("reward function needs an 'example_id' dataset column (see grpo_records)")
        texts = [completion_text(c) for c in completions]
        exs = []
        targets = columns.get("target") or [None] * len(ids)
        for ex_id, target in zip(ids, targets):
            ex = index.get(ex_id)
            if ex is None and hasattr(task, "get_example"):
                ex = task.get_example(ex_id)
            if ex is None and target is not None:
                ex = Example(ex_id, "", target)
            if ex is None:
                raise ValueError(f"reward function: unknown example_id '{ex_id}' (build rows with grpo_records)")
            exs.append(ex)
        if hasattr(task, "score_many"):
            scores = task.score_many(exs, texts)
        else:
            scores = [task.score(e, t) for e, t in zip(exs, texts)]
        return [
            correctness_weight * float(s) + format_weight * float(task.format_ok(t))
            for s, t in zip(scores, texts)
        ]

    reward.__name__ = reward.__qualname__ = f"{task.name}_reward"
    return reward
