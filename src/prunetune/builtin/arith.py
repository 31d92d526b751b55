"""`arith`: seeded GSM8K-format multi-step word problems with worked solutions, built in code.

No dataset can be downloaded here, so prunetune makes its own reasoning data. A problem is a
structured spec (a start value and 2-4 operations in words, maybe with an irrelevant "distractor"
fact) rendered through several sentence templates. The model has to map each phrase to an
operation, ignore the distractor and carry the running total through the chain, so the task tests
the plan as well as the arithmetic. Train and test are disjoint by construction: a hash of the
canonical spec (numbers and operations only, not the wording) decides each problem's split, and
generation rejects problems of the other split. Pure Python, no torch.
"""

from __future__ import annotations

import hashlib
import random

from prunetune.errors import UserError

SPLITS = ("train", "test")
OPS = ("add", "sub", "mul", "div")
SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
TEST_PERCENT = 20  # share of the problem space that belongs to the test split
DATA_OPTIONS = dict(min_steps=2, max_steps=3, max_number=20, distractor_prob=0.15)
"""The distribution the reference model learned, the `arith` task serves and recovery trains on
(small numbers: the plan, not carries, is hard)."""
MAX_FACTOR = 9  # multipliers and divisors are single digits, so products stay readable

NAMES = ("Mia", "Ben", "Ava", "Leo", "Zoe", "Sam", "Ivy", "Max", "Lily", "Omar", "Nora", "Raj", "Emma", "Tom")
ITEMS = ("apples", "marbles", "stickers", "coins", "books", "cards", "shells", "pencils", "stamps", "cookies")

TEMPLATES = {
    "add": (
        "{name} buys {n} more {item}.",
        "{name} finds {n} {item}.",
        "A friend gives {name} {n} {item}.",
        "{name} wins {n} {item} in a game.",
        "Later, {name} gets another {n} {item}.",
    ),
    "sub": (
        "{name} gives away {n} {item}.",
        "{name} loses {n} {item}.",
        "{name} sells {n} of the {item}.",
        "{name} uses {n} {item} for a project.",
        "Then {n} {item} get lost.",
    ),
    "mul": (
        "{name} ends up with {n} times as many {item} as before.",
        "Each of the {item} is swapped for {n} new ones.",
        "The number of {item} grows to {n} times what it was.",
    ),
    "div": (
        "{name} splits the {item} into {n} equal groups and keeps one group.",
        "{name} shares the {item} equally among {n} people and keeps one share.",
        "Only one in every {n} {item} is kept; the rest are thrown out.",
    ),
}
WORD_TEMPLATES = {  # extra phrasings for factor 2 and 3, where English has a word
    ("mul", 2): ("{name} doubles the number of {item}.", "{name} gets twice as many {item}."),
    ("mul", 3): ("{name} triples the number of {item}.",),
    ("div", 2): ("{name} gives away half of the {item}.", "Half of the {item} are given away."),
}
START = ("{name} has {n} {item}.", "{name} starts with {n} {item}.", "There are {n} {item} in {name}'s box.")
DISTRACTOR = ("{other} has {n} {item2}.", "{other} is {n} years old.", "The shop has {n} {item2} for sale.")
QUESTION = ("How many {item} does {name} have now?", "How many {item} are left at the end?")


def canonical(start: int, steps) -> str:
    """The wording-free key of a problem: equal keys are the same problem, whatever the sentences."""
    return f"{start}|" + "|".join(f"{op}:{n}" for op, n in steps)


def split_of(start: int, steps) -> str:
    """Which split a problem belongs to, from a hash of its canonical form (stable across runs)."""
    h = int.from_bytes(hashlib.sha256(canonical(start, steps).encode()).digest()[:8], "big")
    return "test" if h % 100 < TEST_PERCENT else "train"


def apply(value: int, op: str, n: int) -> int:
    return {"add": value + n, "sub": value - n, "mul": value * n, "div": value // n}[op]


def _choose_step(rng: random.Random, value: int, max_number: int, max_value: int) -> tuple[str, int]:
    """A uniformly chosen feasible operation: results stay positive integers within max_value."""
    options = []
    if value < max_value:
        options.append(("add", (1, min(max_number, max_value - value))))
    if value > 1:
        options.append(("sub", (1, min(max_number, value - 1))))
    if value * 2 <= max_value:
        options.append(("mul", (2, min(MAX_FACTOR, max_value // value))))
    divisors = [d for d in range(2, MAX_FACTOR + 1) if value % d == 0]
    if divisors:
        options.append(("div", divisors))
    op, rng_or_list = rng.choice(options)
    n = rng.choice(rng_or_list) if op == "div" else rng.randint(*rng_or_list)
    return op, n


def _render(rng: random.Random, start: int, steps, distractor: int | None) -> str:
    name = rng.choice(NAMES)
    item = rng.choice(ITEMS)
    fill = {"name": name, "item": item}
    sentences = [rng.choice(START).format(n=start, **fill)]
    for op, n in steps:
        choices = TEMPLATES[op] + WORD_TEMPLATES.get((op, n), ())
        sentences.append(rng.choice(choices).format(n=n, **fill))
    if distractor is not None:
        other = rng.choice([x for x in NAMES if x != name])
        item2 = rng.choice([x for x in ITEMS if x != item])
        sentence = rng.choice(DISTRACTOR).format(other=other, n=distractor, item2=item2)
        sentences.insert(rng.randint(1, len(sentences)), sentence)
    sentences.append(rng.choice(QUESTION).format(**fill))
    return " ".join(sentences)


def solution(start: int, steps) -> tuple[str, int]:
    """The worked chain of thought (one equation per line) and the final answer."""
    lines, value = [], start
    for op, n in steps:
        new = apply(value, op, n)
        lines.append(f"{value} {SYMBOL[op]} {n} = {new}")
        value = new
    lines.append(f"#### {value}")
    return "\n".join(lines), value


def generate_problems(
    n: int,
    *,
    split: str = "train",
    seed: int = 0,
    min_steps: int = 2,
    max_steps: int = 4,
    max_number: int = 99,
    max_value: int | None = None,
    distractor_prob: float = 0.3,
) -> list[dict]:
    """`n` distinct problems of `split` in GSM8K format, deterministic in all arguments.

    Difficulty knobs: the number of steps (min_steps..max_steps), the operand range (start values and
    addends up to max_number), the largest running total (max_value, default 2*max_number+1) and how
    often an irrelevant number is mixed in (distractor_prob). Each record also carries its structured
    `spec` ({"start", "steps": [[op, n], ...]}) so checks can recompute answers without the text.
    """
    if split not in SPLITS:
        raise UserError(f"unknown arith split '{split}'; choose from {', '.join(SPLITS)}")
    if not 1 <= min_steps <= max_steps:
        raise UserError(f"arith needs 1 <= min_steps <= max_steps, got {min_steps} and {max_steps}")
    if max_number < 2:
        raise UserError(f"arith max_number must be at least 2, got {max_number}")
    max_value = 2 * max_number + 1 if max_value is None else max_value
    if max_value < max_number:
        raise UserError(f"arith max_value ({max_value}) must be at least max_number ({max_number})")
    rng = random.Random(f"arith/{split}/{seed}")
    seen: set[str] = set()
    records: list[dict] = []
    while len(records) < n:
        start = rng.randint(2, max_number)
        steps, value = [], start
        for _ in range(rng.randint(min_steps, max_steps)):
            op, k = _choose_step(rng, value, max_number, max_value)
            steps.append((op, k))
            value = apply(value, op, k)
        key = canonical(start, steps)
        if split_of(start, steps) != split or key in seen:
            continue
        seen.add(key)
        distractor = rng.randint(2, max_number) if rng.random() < distractor_prob else None
        answer, final = solution(start, steps)
        records.append(
            {
                "id": f"arith-{split}-{seed}-{len(records)}",
                "question": _render(rng, start, steps, distractor),
                "answer": answer,
                "final": final,
                "spec": {"start": start, "steps": [list(s) for s in steps]},
            }
        )
    return records


def prompt_text(question: str) -> str:
    """The prompt the reference model was trained on: no chat template, no few-shot prefix."""
    return f"Question: {question}\nAnswer:"


def format_text(record: dict) -> str:
    """Prompt plus worked answer ("Question: ...\\nAnswer: ...\\n#### N"): the text for cpt / sft."""
    return f"{prompt_text(record['question'])} {record['answer']}"


def records(count: int, seed: int = 0) -> list[dict]:
    """The first `count` training records of a seeded stream (the `arith` text source): text, prompt, completion."""
    return [
        {
            "text": format_text(r),
            "prompt": prompt_text(r["question"]),
            "completion": " " + r["answer"],
            "question": r["question"],
            "answer": r["answer"],
        }
        for r in generate_problems(count, split="train", seed=seed, **DATA_OPTIONS)
    ]
