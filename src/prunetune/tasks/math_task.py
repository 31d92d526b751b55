"""`math`: MATH / MATH-500-format problems from a local JSONL file, answers in `\\boxed{}`.

Records need `problem` and either `answer` (MATH-500) or a `solution` containing `\\boxed{...}`
(MATH). Two answers match when their normalised strings are equal, or when `math-verify` (if
installed) or sympy finds them equivalent (`\\frac{1}{2}` vs `0.5`).
"""

from __future__ import annotations

import re

from prunetune.errors import UserError
from prunetune.tasks.extract import extract_answer, last_boxed, normalize_number
from prunetune.tasks.task import QA_STOP, TASKS, Example, check_limit, math_fewshot_text, qa_prompt
from prunetune.tasks.thinking import OPTION_DOCS, Reasoning

BOXED_HINT = " Put the final answer in \\boxed{}."
_STRIP = (r"\left", r"\right", r"\!", r"\,", r"\;", r"\:", "$", "^\\circ", "^{\\circ}", r"\%", "%")


def normalize_math(ans: str) -> str:
    """A canonical string for a LaTeX answer: no spacing macros, units text, `dfrac`, or trailing `.`."""
    s = ans.strip()
    s = re.sub(r"\\text\{\s*[a-zA-Z ]*\}", "", s) if re.search(r"\d", s) else s  # "5 \text{ cm}" -> "5"
    s = re.sub(r"\\(?:text|mathrm|textbf|mbox)\{([^{}]*)\}", r"\1", s)
    for tok in _STRIP:
        s = s.replace(tok, "")
    s = s.replace(r"\dfrac", r"\frac").replace(r"\tfrac", r"\frac")
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)  # \frac12
    s = s.replace(" ", "").rstrip(".")
    if s.startswith(("x=", "y=", "k=", "n=")):
        s = s[2:]
    return normalize_number(s)


def _latex_to_sympy(s: str):
    import sympy  # noqa: F401 - imported here so sympy stays optional

    expr = s
    for _ in range(5):  # nested fractions
        expr = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))", expr)
    expr = re.sub(r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)", expr)
    expr = expr.replace(r"\pi", "pi").replace(r"\cdot", "*").replace(r"\times", "*").replace("^", "**")
    expr = expr.replace("{", "(").replace("}", ")")
    if "\\" in expr:
        return None
    from sympy.parsing.sympy_parser import (
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    return parse_expr(
        expr,
        transformations=(*standard_transformations, implicit_multiplication_application),
        evaluate=True,
        local_dict={"pi": sympy.pi, "sqrt": sympy.sqrt},
    )


def math_equal(pred: str | None, target: str) -> bool:
    if pred is None:
        return False
    a, b = normalize_math(pred), normalize_math(target)
    if a == b:
        return True
    try:
        import math_verify

        return bool(math_verify.verify(math_verify.parse(f"${b}$"), math_verify.parse(f"${a}$")))
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 - unparsable model output is simply not equal
        return False
    try:
        import sympy

        x, y = _latex_to_sympy(a), _latex_to_sympy(b)
        return x is not None and y is not None and sympy.simplify(x - y) == 0
    except Exception:  # noqa: BLE001 - sympy raises many types on odd strings
        return False


@TASKS.register("math", doc="MATH-style problems from a local JSONL file; boxed answers compared symbolically")
class MathTask:
    name = "math"
    option_docs = OPTION_DOCS

    def __init__(
        self,
        data: str | None = None,
        num_fewshot: int = 0,
        chat: bool | None = None,
        think: str | list[str] = "auto",
        enable_thinking: bool | None = None,
    ):
        if data is None:
            raise UserError("task 'math' needs a local MATH-format JSONL file: pass --data FILE")
        self.data = str(data)
        self.chat = chat
        self.fewshot = math_fewshot_text(num_fewshot)
        self.reasoning = Reasoning(think, enable_thinking, stop=QA_STOP)

    @property
    def stop(self) -> list[str]:
        return self.reasoning.generation_stop

    def examples(self, split: str = "test", limit: int | None = None, seed: int = 0) -> list[Example]:
        from prunetune.data import load_records, where

        check_limit(limit)
        out = []
        for i, rec in enumerate(load_records(self.data), 1):
            if "problem" not in rec:
                raise UserError(f"{where(self.data, i - 1)}: the record has no 'problem' field")
            target = rec.get("answer")
            if target is None:
                target = last_boxed(str(rec.get("solution", "")))
            if target is None:
                raise UserError(f"{where(self.data, i - 1)}: the record has neither 'answer' nor a \\boxed{{}} solution")
            ex_id = str(rec.get("unique_id", rec.get("id", f"math-{i - 1}")))
            out.append(
                Example(ex_id, str(rec["problem"]), str(target), {"solution": rec.get("solution", "")})
            )
            if limit is not None and len(out) >= limit:
                break
        return out

    def build_prompt(self, example: Example, tokenizer) -> str:
        kwargs = self.reasoning.bind(tokenizer)
        prompt = qa_prompt(
            tokenizer, example.prompt + BOXED_HINT, fewshot=self.fewshot, chat=self.chat, template_kwargs=kwargs
        )
        return self.reasoning.seen(prompt)

    def extract(self, completion: str) -> str | None:
        answer = self.reasoning.answer(completion)
        if answer is None:
            return None
        boxed = last_boxed(answer)
        return boxed.strip() if boxed is not None else extract_answer(answer, numeric=False)

    def score(self, example: Example, completion: str) -> float:
        return float(math_equal(self.extract(completion), example.target))

    def format_ok(self, completion: str) -> bool:
        return self.reasoning.format_ok(completion, lambda answer: last_boxed(answer) is not None)
