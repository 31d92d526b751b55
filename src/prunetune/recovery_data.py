"""Recovery data per iteration: chunk i of the built-in `arith` stream or of a local file (fresh, disjoint)."""

from __future__ import annotations

from functools import lru_cache


def arith_records(index: int, size: int, seed: int = 0) -> list[dict]:
    """Chunk `index` of a seeded stream of training problems, with text / prompt / completion fields."""
    from prunetune import arith
    from prunetune.reference import DATA_OPTIONS

    # the distribution the `arith` task evaluates and the reference model learned (not the generator's defaults)
    problems = arith.generate_problems((index + 1) * size, split="train", seed=seed, **DATA_OPTIONS)
    problems = problems[index * size :]
    return [
        {
            "text": arith.format_text(r),
            "prompt": arith.prompt_text(r["question"]),
            "completion": " " + r["answer"],
            "question": r["question"],
            "answer": r["answer"],
        }
        for r in problems
    ]


@lru_cache(maxsize=4)
def _file_records(path: str) -> tuple:
    from prunetune.data import load_records

    return tuple(load_records(path))


def chunk(source: str, index: int, size: int, seed: int = 0) -> list[dict]:
    if source == "arith":
        return arith_records(index, size, seed)
    from prunetune.data import take_chunk

    return take_chunk(list(_file_records(source)), index, size)
