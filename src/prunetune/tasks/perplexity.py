"""`perplexity`: teacher-forced NLL on reference text, no generation.

Two sources: a local JSONL (`data`) with a `text_field` (the whole text is scored) or with
`question_field` + `answer_field` (default when a file has `question`/`answer` but no text field;
only the answer tokens are scored, given the question), or a
reasoning-gym dataset (`gym="gsm_symbolic"`): its worked solutions scored given their questions.
Metrics: `nll` (mean nats per scored token), `perplexity` (exp of it) and `tokens`. There is no
`accuracy`: `evaluate` reports none for this task, and `score` (exact match of a generated
completion with the reference) exists only to satisfy the Task protocol.
"""

from __future__ import annotations

import math

import torch

from prunetune.data import right_pad
from prunetune.errors import UserError
from prunetune.tasks.task import TASKS, Example, check_limit


@TASKS.register("perplexity", doc="teacher-forced NLL and perplexity on reference text (no generation)")
class Perplexity:
    name = "perplexity"
    stop: list[str] = []

    def __init__(
        self,
        data: str | None = None,
        text_field: str = "text",
        question_field: str | None = None,
        answer_field: str | None = None,
        gym: str | None = None,
        max_length: int = 1024,
    ):
        if data is None and gym is None:
            raise UserError("task 'perplexity' needs --data FILE (a JSONL text field) or the option gym=NAME")
        self.data, self.gym = data, gym
        self.text_field, self.question_field, self.answer_field = text_field, question_field, answer_field
        self.max_length = max_length

    def examples(self, split: str = "test", limit: int | None = None, seed: int = 0) -> list[Example]:
        check_limit(limit)
        if self.gym is not None:
            from prunetune.tasks.gym import GymTask

            out = []
            for ex in GymTask(self.gym).examples(split, limit, seed):
                md = ex.meta["entry"].get("metadata", {})
                cot = md.get("answer_cot") or ex.target
                out.append(Example(ex.id, f"Question: {ex.prompt}\nAnswer:", " " + cot))
            return out
        from prunetune.data import field_values, load_records

        records = load_records(self.data)[:limit]
        qa_file = self.text_field not in records[0] and {"question", "answer"} <= set(records[0])
        if self.question_field or self.answer_field or qa_file:
            qs = field_values(records, self.question_field or "question", self.data)
            ans = field_values(records, self.answer_field or "answer", self.data)
            return [
                Example(f"ppl-{i}", f"Question: {q}\nAnswer:", f" {a}")
                for i, (q, a) in enumerate(zip(qs, ans))
            ]
        texts = field_values(records, self.text_field, self.data)
        return [Example(f"ppl-{i}", "", str(t)) for i, t in enumerate(texts)]

    def build_prompt(self, example: Example, tokenizer) -> str:
        return example.prompt

    def extract(self, completion: str) -> str | None:
        return completion.strip() or None

    def score(self, example: Example, completion: str) -> float:
        return float(completion.strip() == example.target.strip())

    def format_ok(self, completion: str) -> bool:
        return bool(completion.strip())

    @torch.inference_mode()
    def measure(
        self, model, tokenizer, examples: list[Example], *, batch_size: int = 4, progress: bool = False
    ) -> dict:
        """Token-weighted mean NLL of each example's target given its prompt."""
        nll_sum, n_tok = 0.0, 0
        device = next(model.parameters()).device
        rows = []
        for ex in examples:
            prompt_ids = tokenizer(ex.prompt, add_special_tokens=True)["input_ids"] if ex.prompt else []
            target_ids = tokenizer(ex.target, add_special_tokens=not ex.prompt)["input_ids"]
            ids = (prompt_ids + target_ids)[: self.max_length]
            labels = ([-100] * len(prompt_ids) + target_ids)[: self.max_length]
            rows.append((ids, labels))
        it = range(0, len(rows), batch_size)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc="perplexity", leave=False)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        for start in it:
            batch = rows[start : start + batch_size]
            enc = {k: v.to(device) for k, v in right_pad([i for i, _ in batch], pad, [lab for _, lab in batch]).items()}
            labels = enc.pop("labels")
            logits = model(**enc).logits.float()
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]),
                labels[:, 1:].reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            nll_sum += float(loss)
            n_tok += int((labels[:, 1:] != -100).sum())
        if n_tok == 0:
            raise UserError("perplexity: no tokens to score (empty texts?)")
        nll = nll_sum / n_tok
        return {"nll": nll, "perplexity": math.exp(min(nll, 700.0)), "tokens": n_tok}
