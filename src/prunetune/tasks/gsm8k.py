"""`gsm8k`: GSM8K-format word problems from a local JSONL file (question, answer ending `#### N`).

No package ships GSM8K, so the data is a path the user gives (`--data`). Scoring extracts the final
number with `tasks.extract` and compares it numerically to the number after `####`.
"""

from __future__ import annotations

from prunetune.errors import UserError
from prunetune.tasks.extract import extract_answer, numbers_equal
from prunetune.tasks.task import QA_STOP, TASKS, Example, check_limit, math_fewshot_text, qa_prompt
from prunetune.tasks.thinking import OPTION_DOCS, Reasoning


def gsm8k_target(answer: str) -> str | None:
    """The reference number of a GSM8K answer: the text after `####`, normalised."""
    if "####" not in answer:
        return None
    return extract_answer(answer[answer.rindex("####") :])


@TASKS.register("gsm8k", doc="GSM8K-format word problems from a local JSONL file (question, answer ending #### N)")
class GSM8K:
    name = "gsm8k"
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
            raise UserError("task 'gsm8k' needs a local GSM8K-format JSONL file: pass --data FILE")
        self.data = str(data)
        self.fewshot = math_fewshot_text(num_fewshot)
        self.chat = chat
        self.reasoning = Reasoning(think, enable_thinking, stop=QA_STOP)

    @property
    def stop(self) -> list[str]:
        return self.reasoning.generation_stop

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
        kwargs = self.reasoning.bind(tokenizer)
        return self.reasoning.seen(
            qa_prompt(tokenizer, example.prompt, fewshot=self.fewshot, chat=self.chat, template_kwargs=kwargs)
        )

    def extract(self, completion: str) -> str | None:
        answer = self.reasoning.answer(completion)
        return None if answer is None else extract_answer(answer)

    def score(self, example: Example, completion: str) -> float:
        return float(numbers_equal(self.extract(completion), example.target))

    def format_ok(self, completion: str) -> bool:
        """An explicit final-answer marker (not just a stray last number), after a closed trace."""
        return self.reasoning.format_ok(completion, answer_marked)


def answer_marked(text: str) -> bool:
    """An explicit final-answer marker: `####`, `answer is` or `\\boxed`."""
    return "####" in text or "answer is" in text.lower() or "\\boxed" in text
