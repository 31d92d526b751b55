"""`arith`: the built-in multi-step arithmetic word problems (prunetune.builtin.arith) as a Task.

The prompt is exactly the reference model's training format ("Question: ...\\nAnswer:", no chat
template, no few-shot prefix), so the shipped reference model is scored the way it was trained.
Scoring is exact match of the final number via `tasks.extract`, also the GRPO reward.
"""

from __future__ import annotations

import re

from prunetune.builtin import arith
from prunetune.tasks.extract import extract_answer, numbers_equal
from prunetune.tasks.task import TASKS, Example, check_limit
from prunetune.tasks.thinking import OPTION_DOCS, Reasoning

_FINAL = re.compile(r"####\s*-?\d+")
DEFAULT_TEST_SIZE = 1000  # held-out problems served when no limit is given (200 gave +-1.5-3.5 points)


@TASKS.register("arith")
class ArithTask:
    """Generated multi-step arithmetic word problems (the reference model's format); exact final number."""

    name = "arith"
    option_docs = {"think": OPTION_DOCS["think"]}  # no enable_thinking: the prompt never uses a chat template

    def __init__(
        self,
        min_steps: int = arith.DATA_OPTIONS["min_steps"],
        max_steps: int = arith.DATA_OPTIONS["max_steps"],
        max_number: int = arith.DATA_OPTIONS["max_number"],
        max_value: int | None = None,
        distractor_prob: float = arith.DATA_OPTIONS["distractor_prob"],
        size: int = DEFAULT_TEST_SIZE,
        think: str | list[str] = "auto",
    ):
        self.options = dict(
            min_steps=min_steps,
            max_steps=max_steps,
            max_number=max_number,
            max_value=max_value,
            distractor_prob=distractor_prob,
        )
        self.size = size
        self.reasoning = Reasoning(think, stop=["\nQuestion:"])

    @property
    def stop(self) -> list[str]:
        return self.reasoning.generation_stop

    def examples(self, split: str = "test", limit: int | None = None, seed: int = 0) -> list[Example]:
        """`limit` (default `size`) generated problems of `split`; train and test never overlap."""
        check_limit(limit)
        records = arith.generate_problems(limit or self.size, split=split, seed=seed, **self.options)
        return [self.example(r) for r in records]

    @staticmethod
    def example(record: dict) -> Example:
        """A generated problem record as an Example."""
        r = record
        return Example(r["id"], r["question"], str(r["final"]), {"solution": r["answer"], "spec": r["spec"]})

    def build_prompt(self, example: Example, tokenizer) -> str:
        self.reasoning.bind(tokenizer)
        return self.reasoning.seen(arith.prompt_text(example.prompt))

    def extract(self, completion: str) -> str | None:
        answer = self.reasoning.answer(completion)
        return None if answer is None else extract_answer(answer)

    def score(self, example: Example, completion: str) -> float:
        return float(numbers_equal(self.extract(completion), example.target))

    def format_ok(self, completion: str) -> bool:
        """The training format's explicit final line `#### <integer>`."""
        return self.reasoning.format_ok(completion, lambda answer: _FINAL.search(answer) is not None)
