"""reasoning-gym datasets by name (`gsm_symbolic`, `products`, `chain_sum`, ...), seeded, scored by the gym.

Problems are generated procedurally, so nothing is downloaded. The score is the dataset's own
`score_answer` (some give partial credit, e.g. 0.01 for a wrong number): evaluation counts an
example correct only at 1.0, while a GRPO reward may use the partial credit.
Splits: "test" uses the seed as given, "train" a distant seed; the gym does not promise the two
never share a problem, so treat them as different samples rather than disjoint sets.
"""

from __future__ import annotations

import re

from prunetune.errors import UserError, did_you_mean
from prunetune.tasks.extract import extract_answer, normalize_number
from prunetune.tasks.task import QA_STOP, TASKS, Example, check_limit, math_fewshot_text, qa_prompt
from prunetune.tasks.thinking import OPTION_DOCS, Reasoning

TRAIN_SEED_OFFSET = 1_000_003
DEFAULT_SIZE = 100


def _is_number(s: str) -> bool:
    return re.fullmatch(r"-?\d+(?:\.\d+)?", normalize_number(str(s))) is not None


class GymTask:
    option_docs = OPTION_DOCS

    def __init__(
        self,
        dataset: str,
        num_fewshot: int = 0,
        size: int = DEFAULT_SIZE,
        chat: bool | None = None,
        think: str | list[str] = "auto",
        enable_thinking: bool | None = None,
        **config,
    ):
        import reasoning_gym
        from reasoning_gym.factory import DATASETS

        if dataset not in DATASETS:
            raise UserError(f"unknown reasoning-gym dataset '{dataset}'{did_you_mean(dataset, DATASETS)}")
        self.name = dataset
        self.config = config
        self.size = size
        self.chat = chat
        self.reasoning = Reasoning(think, enable_thinking, stop=QA_STOP)
        try:
            self._scorer = reasoning_gym.create_dataset(dataset, seed=0, size=1, **config)
        except (TypeError, ValueError, AssertionError) as e:
            raise UserError(f"bad option for reasoning-gym dataset '{dataset}': {e}") from None
        probe = [self._scorer[0]["answer"]]
        self.numeric = all(_is_number(a) for a in probe)
        self.fewshot = self._fewshot(num_fewshot)

    @property
    def stop(self) -> list[str]:
        return self.reasoning.generation_stop

    def _dataset(self, split: str, seed: int, size: int):
        import reasoning_gym

        if split not in ("test", "train"):
            raise UserError(f"unknown split '{split}' for task '{self.name}'; use test or train")
        real_seed = seed + (TRAIN_SEED_OFFSET if split == "train" else 0)
        return reasoning_gym.create_dataset(self.name, seed=real_seed, size=size, **self.config)

    def _fewshot(self, k: int) -> str:
        if k == 0:
            return ""
        if self.name != "gsm_symbolic" and self.numeric:
            return math_fewshot_text(k)
        ds = self._dataset("train", 7, k)  # demonstrations from the train side, fixed seed
        shots = []
        for entry in ds:
            cot = entry["metadata"].get("answer_cot") or ""
            cot = cot.split("####")[0].strip().replace("\n", " ")
            shots.append((entry["question"], cot, entry["answer"]))
        return math_fewshot_text(k, shots)

    def examples(self, split: str = "test", limit: int | None = None, seed: int = 0) -> list[Example]:
        check_limit(limit)
        size = limit or self.size
        ds = self._dataset(split, seed, size)
        return [
            Example(f"{self.name}-{split}-s{seed}-{i}", e["question"], str(e["answer"]), {"entry": e})
            for i, e in enumerate(ds)
        ]

    def get_example(self, example_id: str) -> Example:
        """Rebuild an example from its id (`<name>-<split>-s<seed>-<index>`), e.g. for `prunetune score`."""
        m = re.fullmatch(rf"{re.escape(self.name)}-(test|train)-s(\d+)-(\d+)", example_id)
        if not m:
            raise KeyError(example_id)
        split, seed, idx = m.group(1), int(m.group(2)), int(m.group(3))
        e = self._dataset(split, seed, idx + 1)[idx]
        return Example(example_id, e["question"], str(e["answer"]), {"entry": e})

    def build_prompt(self, example: Example, tokenizer) -> str:
        kwargs = self.reasoning.bind(tokenizer)
        return self.reasoning.seen(
            qa_prompt(tokenizer, example.prompt, fewshot=self.fewshot, chat=self.chat, template_kwargs=kwargs)
        )

    def extract(self, completion: str) -> str | None:
        answer = self.reasoning.answer(completion)
        return None if answer is None else extract_answer(answer, numeric=self.numeric)

    def score(self, example: Example, completion: str) -> float:
        entry = example.meta.get("entry") or {"answer": example.target, "metadata": {}}
        answer = self.extract(completion)
        if answer is None:  # no answer (a trace never closed) is wrong, not the gym's partial credit
            return 0.0
        try:
            return float(self._scorer.score_answer(answer, entry))
        except Exception:  # noqa: BLE001 - a gym scorer failing on odd model output means "wrong"
            return 0.0

    def format_ok(self, completion: str) -> bool:
        return self.reasoning.format_ok(completion, _answer_marked)


def _answer_marked(text: str) -> bool:
    low = text.lower()
    return "answer is" in low or "####" in text or "<answer>" in low or "\\boxed" in text


@TASKS.register("gsm_symbolic")
class GSMSymbolic(GymTask):
    """reasoning-gym's GSM-Symbolic: 100 GSM8K-derived templates with fresh numbers."""

    def __init__(
        self,
        num_fewshot: int = 0,
        size: int = DEFAULT_SIZE,
        chat: bool | None = None,
        think: str | list[str] = "auto",
        enable_thinking: bool | None = None,
        **config,
    ):  # spelled out so `ls -v` lists the options
        super().__init__("gsm_symbolic", num_fewshot=num_fewshot, size=size, chat=chat, think=think,
                         enable_thinking=enable_thinking, **config)
