"""Answer extraction and normalisation, written in one visible place for every math-style task.

Order of precedence (the first rule that matches wins; within a rule the LAST occurrence wins,
because models restate the question's numbers before answering):
1. `<answer>...</answer>` tags (reasoning-gym's format)
2. `#### <answer>` (GSM8K)
3. `The (final) answer is <answer>`
4. `\\boxed{<answer>}` (MATH; nested braces handled)
5. the last number in the text
Normalisation: strip spaces, `$`, commas between digits, a trailing `.`, units of `%`, and turn
`12.0` / `12.50` into `12` / `12.5`.
"""

from __future__ import annotations

import re

_NUMBER = r"-?\$?\s*\d[\d,]*(?:\.\d+)?|-?\.\d+"
_TAG = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL | re.IGNORECASE)
_HASHES = re.compile(r"####\s*([^\n]*)")
_ANSWER_IS = re.compile(r"(?:final\s+)?answer\s+is\s*:?\s*([^\n]*)", re.IGNORECASE)
_NUM = re.compile(_NUMBER)


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`), with nested braces balanced."""
    idx = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if idx < 0:
        return None
    i = text.find("{", idx)
    if i < 0:
        rest = text[idx + len("\\boxed") :].strip()  # "\boxed 5"
        return rest.split()[0] if rest else None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None  # unbalanced: the answer was cut off


def normalize_number(text: str) -> str:
    """'$1,234.50' -> '1234.5', '12.0' -> '12', '-3.' -> '-3'; non-numbers are only stripped."""
    s = text.strip().rstrip(".").strip()
    s = s.replace("$", "").replace("\\$", "").replace("\\%", "").rstrip("%").strip()
    s = re.sub(r"(?<=\d),(?=\d{3})", "", s)
    if re.fullmatch(r"-?\s*\d+(?:\.\d+)?|-?\.\d+", s):
        s = s.replace(" ", "")
        if "." in s:
            s = s.rstrip("0").rstrip(".")
        if s in ("-0", ""):
            s = "0"
        if s.startswith("-."):
            s = "-0" + s[1:]
        elif s.startswith("."):
            s = "0" + s
    return s


def first_number(text: str) -> str | None:
    m = _NUM.search(text)
    return normalize_number(m.group(0)) if m else None


def last_number(text: str) -> str | None:
    found = _NUM.findall(text)
    return normalize_number(found[-1]) if found else None


def extract_answer(completion: str, *, numeric: bool = True) -> str | None:
    """The final answer in a completion by the rules above, normalised; None when there is none.

    With `numeric`, an explicit marker's text is reduced to its first number (so "#### 18 dollars"
    gives "18"); without it, the marker's text is returned stripped (for non-numeric answers).
    """
    for pattern in (_TAG, _HASHES, _ANSWER_IS):
        matches = pattern.findall(completion)
        if matches:
            raw = matches[-1]
            boxed = last_boxed(raw)
            raw = boxed if boxed is not None else raw
            if numeric:
                num = first_number(raw)
                if num is not None:
                    return num
                continue
            raw = raw.strip().rstrip(".").strip()
            if raw:
                return normalize_number(raw)
    boxed = last_boxed(completion)
    if boxed is not None:
        return normalize_number(boxed)
    return last_number(completion) if numeric else None


def numbers_equal(a: str | None, b: str | None) -> bool:
    """Exact match after normalisation, or numerically equal when both parse as numbers."""
    if a is None or b is None:
        return False
    a, b = normalize_number(a), normalize_number(b)
    if a == b:
        return True
    try:
        return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))
    except ValueError:
        return False
