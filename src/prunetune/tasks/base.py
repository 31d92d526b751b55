"""The Task protocol: one object yields examples, builds prompts and scores completions.

The same `score` is the evaluation metric and the RL reward, so evaluation and GRPO can never
disagree about what "correct" means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass
class Example:
    """One problem. `prompt` is the bare question (no few-shot prefix, no chat template)."""

    id: str
    prompt: str
    target: str
    meta: dict = field(default_factory=dict)


@runtime_checkable
class Task(Protocol):
    name: str
    stop: list[str]

    def examples(self, split: str = "test", limit: int | None = None, seed: int = 0) -> list[Example]: ...

    def build_prompt(self, example: Example, tokenizer) -> str: ...

    def score(self, example: Example, completion: str) -> float: ...

    def format_ok(self, completion: str) -> bool: ...

    def extract(self, completion: str) -> str | None: ...


def apply_chat(tokenizer, user_text: str, *, fewshot: str = "", use_chat: bool | None = None) -> str:
    """Wrap a question for generation: the chat template when the tokenizer has one, else plain text.

    Few-shot demonstrations are prepended to the user turn (chat) or the text (plain), so the
    same prefix works for base and instruct models.
    """
    text = f"{fewshot}{user_text}"
    has_template = bool(getattr(tokenizer, "chat_template", None)) if tokenizer is not None else False
    if use_chat is None:
        use_chat = has_template
    if use_chat and has_template:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
    return text


def check_limit(limit: int | None) -> None:
    from prunetune.errors import UserError

    if limit is not None and limit <= 0:
        raise UserError(f"--limit must be a positive number of examples, got {limit}")
