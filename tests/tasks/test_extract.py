import pytest

from prunetune.tasks.extract import extract_answer, last_boxed, normalize_number, numbers_equal
from prunetune.tasks.math_task import math_equal

# (completion, expected extracted answer); decoys are numbers that come AFTER or BEFORE the answer
CASES = [
    ("48 / 2 = 24 clips in May.\n#### 72", "72"),
    ("#### 1,234", "1234"),
    ("#### $18.00", "18"),
    ("#### 18 dollars and 5 cents", "18"),
    ("She has 5 apples. The answer is 12.", "12"),
    ("The answer is: -3.", "-3"),
    ("So the final answer is $1,000,000.", "1000000"),
    ("The answer is 7. Check: 3 + 4 = 7, and 2 * 9 = 18.", "7"),  # decoy numbers after the marker
    ("First 3 + 4 = 7. Then \\boxed{42} is right, 99 is not.", "42"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("We get 3, then 8, then 15", "15"),  # last number
    ("x = 0.50", "0.5"),
    ("The total is 12.0", "12"),
    ("<answer>56</answer> and later 3", "56"),
    ("#### 5\n\nQuestion: what is 9 + 9? #### 18", "18"),  # last marker wins (runaway generation)
    ("No numbers here at all.", None),
    ("The answer is unknown", None),
]


@pytest.mark.parametrize("completion,expected", CASES)
def test_extraction_table(completion, expected):
    assert extract_answer(completion) == expected


@pytest.mark.parametrize(
    "raw,norm",
    [("$1,234", "1234"), ("12.0", "12"), ("12.50", "12.5"), ("-0.0", "0"), (".5", "0.5"), ("7.", "7")],
)
def test_normalize_number(raw, norm):
    assert normalize_number(raw) == norm


def test_non_numeric_marker_and_boxed_nesting():
    assert extract_answer("The answer is banana.", numeric=False) == "banana"
    assert last_boxed("a \\boxed{\\frac{\\sqrt{2}}{2}} b") == "\\frac{\\sqrt{2}}{2}"
    assert last_boxed("cut off \\boxed{\\frac{1}{2") is None


def test_number_equality_and_math_equivalence():
    assert numbers_equal("1,000", "1000") and numbers_equal("3.0", "3") and not numbers_equal("3", "4")
    assert not numbers_equal(None, "3")
    assert math_equal("\\dfrac{1}{2}", "\\frac{1}{2}")
    assert math_equal("0.5", "\\frac{1}{2}")  # sympy equivalence
    assert math_equal("5 \\text{ cm}", "5")
    assert math_equal("2\\sqrt{2}", "\\sqrt{8}")
    assert not math_equal("\\frac{1}{3}", "\\frac{1}{2}")
