"""The Task protocol: one object yields examples, builds prompts and scores completions.

The same `score` is the evaluation metric and the RL reward, so evaluation and GRPO can never
disagree about what "correct" means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from prunetune.registry import Registry

TASKS = Registry("task")
"""name -> Task class (constructed with the task's options as keyword arguments)."""


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


def apply_chat(
    tokenizer, user_text: str, *, fewshot: str = "", use_chat: bool | None = None, template_kwargs: dict | None = None
) -> str:
    """Wrap a question for generation: the chat template when the tokenizer has one, else plain text.

    Few-shot demonstrations are prepended to the user turn (chat) or the text (plain), so the
    same prefix works for base and instruct models. `template_kwargs` go to the template (enable_thinking).
    """
    text = f"{fewshot}{user_text}"
    has_template = bool(getattr(tokenizer, "chat_template", None)) if tokenizer is not None else False
    if use_chat is None:
        use_chat = has_template
    if use_chat and has_template:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True, **(template_kwargs or {})
        )
    return text


def check_limit(limit: int | None) -> None:
    from prunetune.errors import UserError

    if limit is not None and limit <= 0:
        raise UserError(f"--limit must be a positive number of examples, got {limit}")


# Worked demonstrations written for prunetune (not taken from any benchmark), used as few-shot prefixes.
FEWSHOT_MATH = (
    (
        "A baker makes 24 rolls in the morning and 18 in the afternoon. He sells 30 of them. "
        "How many rolls are left?",
        "He makes 24 + 18 = 42 rolls. After selling 30, 42 - 30 = 12 rolls are left.",
        "12",
    ),
    (
        "Lena reads 15 pages a day for 4 days, then reads 20 more pages. How many pages has she read?",
        "In 4 days she reads 15 * 4 = 60 pages. Then 60 + 20 = 80 pages.",
        "80",
    ),
    (
        "A box holds 6 eggs. How many boxes are needed for 45 eggs?",
        "45 / 6 = 7.5, so 7 full boxes are not enough and she needs 8 boxes.",
        "8",
    ),
    (
        "Pencils cost 3 dollars each. Maria buys 7 pencils and pays with a 50 dollar bill. "
        "How much change does she get?",
        "7 pencils cost 7 * 3 = 21 dollars. Her change is 50 - 21 = 29 dollars.",
        "29",
    ),
    (
        "A train travels at 60 kilometres per hour for 3 hours, then at 40 kilometres per hour for 2 hours. "
        "How far does it travel?",
        "First it covers 60 * 3 = 180 km, then 40 * 2 = 80 km. In total 180 + 80 = 260 km.",
        "260",
    ),
    (
        "A hall has 5 rows of 12 chairs. 17 chairs are taken. How many chairs are free?",
        "There are 5 * 12 = 60 chairs. 60 - 17 = 43 chairs are free.",
        "43",
    ),
    (
        "Tom has 3 times as many marbles as Sam, who has 14. Tom gives 10 marbles away. "
        "How many marbles does Tom have now?",
        "Tom has 3 * 14 = 42 marbles. After giving 10 away he has 42 - 10 = 32.",
        "32",
    ),
    (
        "A garden is 8 metres long and 5 metres wide. Fencing costs 4 dollars per metre. "
        "How much does it cost to fence the whole garden?",
        "The perimeter is 2 * (8 + 5) = 26 metres. The fence costs 26 * 4 = 104 dollars.",
        "104",
    ),
)
MATH_INSTRUCTION = "Solve the problem step by step, then end with 'The answer is <answer>.'"


def math_fewshot_text(k: int, shots=FEWSHOT_MATH) -> str:
    """`k` demonstrations in the Question/Answer format, ending with 'The answer is N.'"""
    from prunetune.errors import UserError

    if k < 0 or k > len(shots):
        raise UserError(f"num_fewshot must be between 0 and {len(shots)}, got {k}")
    return "".join(f"Question: {q}\nAnswer: {cot} The answer is {a}.\n\n" for q, cot, a in shots[:k])


def qa_prompt(
    tokenizer, question: str, *, fewshot: str = "", chat: bool | None = None, template_kwargs: dict | None = None
) -> str:
    """'Question: ...\\nAnswer:' for plain models; the same inside the chat template when there is one."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    use_chat = has_template if chat is None else (chat and has_template)
    if use_chat:
        return apply_chat(tokenizer, f"{fewshot}Question: {question}\n{MATH_INSTRUCTION}", use_chat=True,
                          template_kwargs=template_kwargs)
    return f"{fewshot}Question: {question}\nAnswer:"


QA_STOP = ["\nQuestion:", "\n\n\n"]
