"""`gsm8k`: GSM8K-format word problems from a local JSONL file (question, answer ending `#### N`).

No package ships GSM8K, so the data is a path the user gives (`--data`). Scoring extracts the final
number with `tasks.extract` and compares it numerically to the number after `####`.
"""

from __future__ import annotations

from prunetune.errors import UserError
from prunetune.tasks.extract import extract_answer, numbers_equal
from prunetune.tasks.task import QA_STOP, TASKS, Example, check_limit, math_fewshot_text, qa_prompt


def gsm8k_target(answer: str) -> str | None:
    """The reference number of a GSM8K answer: the text after `####`, normalised."""
    if "####" not in answer:
        return None
    return extract_answer(answer[answer.rindex("####") :])


@TASKS.register("gsm8k", doc="GSM8K-format word problems from a local JSONL file (question, answer ending #### N)")
class GSM8K:
    name = "gsm8k"

    def __init__(self, data: str | None = None, num_fewshot: int = 0, chat: bool | None = None):
        if data is None:
            raise UserError("task 'gsm8k' needs a local GSM8K-format JSONL file: pass --data FILE")
        self.data = str(data)
        self.fewshot = math_fewshot_text(num_fewshot)
        self.chat = chat
        self.stop = list(QA_STOP)

    def examples(self, split: str = "test", limit: int | None = None, seed: int = 0) -> list[Example]:
        from prunetune.data import load_records

        check_limit(limit)
        out = []
        from prunetune.data import where

        for i, rec in enumerate(load_records(self.data), 1):
            if "question" not in rec or "answer" not in rec:
                raise UserError(f"{where(self.data, i - 1)}: a record needs 'question' and 'answer' fields")
            target = gsm8k_target(str(rec["answer"]))
            if target is None:
                raise UserError(f"{where(self.data, i - 1)}: no '#### <number>' in its answer")
            ex_id = str(rec.get("id", rec.get("task_id", f"gsm8k-{i - 1}")))
            out.append(Example(ex_id, str(rec["question"]), target, {"solution": str(rec["answer"])}))
            if limit is not None and len(out) >= limit:
                break
        return out

    def build_prompt(self, example: Example, tokenizer) -> str:
        return qa_prompt(tokenizer, example.prompt, fewshot=self.fewshot, chat=self.chat)

    def extract(self, completion: str) -> str | None:
        return extract_answer(completion)

    def score(self, example: Example, completion: str) -> float:
        return float(numbers_equal(self.extract(completion), example.target))

    def format_ok(self, completion: str) -> bool:
        """An explicit final-answer marker (not just a stray last number)."""
        low = completion.lower()
        return "####" in completion or "answer is" in low or "\\boxed" in completion
