"""The arith generator: correct worked answers, determinism, and disjoint train/test splits."""

import operator
import re

import pytest

from prunetune.builtin import arith
from prunetune.errors import UserError

# An operator table of the test's own: answers are recomputed without the generator's arithmetic.
OPS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv}
SYMBOLS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


def _is_subsequence(needles, haystack):
    it = iter(haystack)
    return all(any(x == y for y in it) for x in needles)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"min_steps": 4, "max_steps": 4, "max_number": 20},
        {"max_number": 999, "max_value": 5000, "distractor_prob": 1.0},
    ],
)
def test_answers_are_correct_recomputed_from_spec_and_text(options):
    lo, hi = options.get("min_steps", 2), options.get("max_steps", 4)
    max_value = options.get("max_value", 2 * options.get("max_number", 99) + 1)
    for rec in arith.generate_problems(300, split="train", seed=3, **options):
        assert set(rec) >= {"id", "question", "answer", "final"}
        spec = rec["spec"]
        value = spec["start"]
        for op, n in spec["steps"]:
            value = OPS[op](value, n)
            assert value == int(value) and 0 < value <= max_value  # exact, positive, within range
            value = int(value)
        assert value == rec["final"]
        assert lo <= len(spec["steps"]) <= hi
        # the worked solution: one true equation per step, chained, then "#### final"
        *lines, last = rec["answer"].split("\n")
        assert last == f"#### {rec['final']}"
        prev = spec["start"]
        for line in lines:
            a, sym, b, eq, c = line.split()
            assert eq == "=" and int(a) == prev and SYMBOLS[sym](int(a), int(b)) == int(c)
            prev = int(c)
        assert prev == rec["final"]
        # the question states the start and every operand, in order (a distractor may sit between)
        numbers = [int(x) for x in re.findall(r"\d+", rec["question"])]
        operands = [spec["start"]] + [n for _, n in spec["steps"]]
        words = ("doubles", "twice", "triples", "half")
        if not any(w in rec["question"].lower() for w in words):
            assert _is_subsequence(operands, numbers), rec["question"]
        assert rec["question"].rstrip().endswith("?")


def test_format_text_is_prompt_plus_answer():
    rec = arith.generate_problems(1, seed=1)[0]
    text = arith.format_text(rec)
    assert text == f"Question: {rec['question']}\nAnswer: {rec['answer']}"
    assert text.startswith(arith.prompt_text(rec["question"]))
    assert text.endswith(f"#### {rec['final']}")


def test_deterministic_per_seed_and_seed_changes_data():
    a = arith.generate_problems(200, split="test", seed=7)
    assert a == arith.generate_problems(200, split="test", seed=7)
    b = arith.generate_problems(200, split="test", seed=8)
    assert [r["question"] for r in a] != [r["question"] for r in b]
    assert len({r["id"] for r in a}) == 200


def test_train_and_test_never_overlap():
    keys = {}
    for split in arith.SPLITS:
        recs = [r for seed in (0, 1) for r in arith.generate_problems(3000, split=split, seed=seed)]
        keys[split] = {arith.canonical(r["spec"]["start"], r["spec"]["steps"]) for r in recs}
        assert all(arith.split_of(r["spec"]["start"], r["spec"]["steps"]) == split for r in recs)
    assert not keys["train"] & keys["test"]
    assert not {r["question"] for r in arith.generate_problems(3000, split="train")} & {
        r["question"] for r in arith.generate_problems(3000, split="test")
    }
    # other difficulty settings draw from the same hash partition
    hard = arith.generate_problems(2000, split="train", max_number=20, min_steps=2, max_steps=2)
    assert not {arith.canonical(r["spec"]["start"], r["spec"]["steps"]) for r in hard} & keys["test"]


def test_bad_options_are_user_errors():
    with pytest.raises(UserError, match="split"):
        arith.generate_problems(1, split="validation")
    with pytest.raises(UserError, match="min_steps"):
        arith.generate_problems(1, min_steps=3, max_steps=2)
    with pytest.raises(UserError, match="max_number"):
        arith.generate_problems(1, max_number=1)
