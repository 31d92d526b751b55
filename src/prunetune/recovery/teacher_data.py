"""Sequence-level distillation data: the teacher's own solutions to prompts, generated once and cached.

The dense model (the teacher) completes each prompt; with `rejection` only the completions its task
scores correct are kept (rejection sampling); the student then trains on (prompt, completion) pairs
with any pairs tuner (sft, or distill with format prompt_completion: token-level KD on them).

Every generation, kept or not, goes to one JSONL cache, rewritten atomically after each batch: a
killed run leaves the previous complete file, and a resumed one generates only the prompts the cache
lacks. The first line records the settings that made it (`meta`); a cache made with other settings, or
an unreadable line, is a one-line error naming the file before anything is generated or trained.

What a prompt is and how a completion is scored are the caller's (the loop builds them from tasks,
which this layer may not import): `collect` takes the prompts as records and two callables.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prunetune.config import bounded
from prunetune.errors import UserError
from prunetune.io import atomic_write_text


@dataclass
class PromptsConfig:
    """Where recovery's prompts come from (sequence-level and on-policy distillation)."""

    sources: list[str] = field(default_factory=list)
    """Prompt sources, mixed in turn: a task name (its train-side generator: reasoning-gym tasks draw at
    seed + 1,000,003, apart from every evaluation seed below that; the task's evaluation options apply),
    a local JSONL/JSON/parquet file of prompts, or a registered text source."""
    prompt_field: str = "prompt"
    """Files and text sources: the record field holding the prompt ('question' works too)."""
    chat: bool = False
    """Wrap file / text-source prompts in the teacher's chat template (an error if it has none); task
    prompts are built as the task's evaluation builds them."""
    seed: int = 0
    """Which draw of the task generators (the same for every run seed, so runs can share one cache)."""
    count: int | None = bounded(None, ge=1)
    """Prompts to draw (default: the records the run trains on)."""


@dataclass
class TeacherDataConfig:
    """Sequence-level distillation: the teacher completes recovery.prompts, the student trains on the pairs."""

    rejection: bool = False
    """Keep only completions their task scores correct (task sources only); more prompts are drawn, up to
    max_draw_factor x count, until count are kept."""
    max_draw_factor: float = bounded(4.0, ge=1.0)
    """rejection: the most prompts drawn, as a multiple of the records needed."""
    max_new_tokens: int = bounded(128, ge=1)
    """Tokens the teacher may write per solution (a task's stop strings end it earlier)."""
    temperature: float = bounded(0.0, ge=0.0)
    """0: greedy; above: sampled at this temperature."""
    batch_size: int = bounded(32, ge=1)
    """Prompts the teacher completes together (also how often the cache is rewritten)."""
    cache: str | None = None
    """A generations file to read and extend instead of the run's own (so several runs share one); made
    with other settings it is an error."""


@dataclass
class Prompt:
    id: str
    prompt: str
    source: str
    score: Callable[[str], float] | None = None  # completion -> task score (None: not scorable)
    stop: list[str] | None = None  # strings that end the completion (a task's)


CACHE_FIELDS = ("id", "source", "prompt", "completion", "score")


class GenerationCache:
    """The generations file: a meta line, then one {id, source, prompt, completion, score} per line."""

    def __init__(self, path: str | Path, meta: dict):
        self.path, self.meta = Path(path), meta
        self.rows: dict[str, dict] = {}
        if self.path.exists():
            self._read()

    def _read(self) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        if not lines:
            raise UserError(f"generations cache '{self.path}' is empty (corrupt); delete it to regenerate")
        for i, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"generations cache '{self.path}':{i}: not JSON ({e.msg}); delete it to regenerate") from None
            if i == 1:
                if not isinstance(row, dict) or not isinstance(row.get("meta"), dict):
                    raise UserError(f"generations cache '{self.path}':1: no meta line; delete it to regenerate")
                differs = [k for k in self.meta if row["meta"].get(k) != self.meta[k]]
                if differs:
                    raise UserError(
                        f"generations cache '{self.path}' was made with other settings ({', '.join(differs)} "
                        f"differ: {row['meta'].get(differs[0])!r} vs {self.meta[differs[0]]!r}); give another cache"
                    )
                continue
            if not isinstance(row, dict) or any(k not in row for k in CACHE_FIELDS) or not isinstance(row["completion"], str):
                raise UserError(f"generations cache '{self.path}':{i}: not a generation record; delete it to regenerate")
            self.rows[row["id"]] = row

    def add(self, rows: list[dict]) -> None:
        for r in rows:
            self.rows[r["id"]] = r
        text = json.dumps({"meta": self.meta}) + "\n" + "".join(json.dumps(r) + "\n" for r in self.rows.values())
        atomic_write_text(self.path, text)


def check_teacher(tokenizer, prompts: PromptsConfig) -> None:
    """A teacher that cannot write solutions: no EOS (it would never stop), no chat template where asked."""
    if tokenizer.eos_token_id is None:
        raise UserError("recovery.teacher_data: the teacher's tokenizer has no EOS token, so its solutions never end")
    if prompts.chat and not getattr(tokenizer, "chat_template", None):
        raise UserError("recovery.prompts.chat: the teacher's tokenizer has no chat template")


def records_needed(cfg: TeacherDataConfig, needed: int) -> int:
    """Prompts drawn at most for `needed` kept records."""
    return math.ceil(needed * cfg.max_draw_factor) if cfg.rejection else needed


def collect(
    prompts: Callable[[int], list[Prompt]],
    generate: Callable[[list[Prompt]], list[str]],
    cfg: TeacherDataConfig,
    cache: GenerationCache,
    needed: int,
    *,
    progress: bool = True,
) -> list[dict]:
    """`needed` {prompt, completion} records: the cached ones first, the teacher asked only for the rest.

    `prompts(n)` gives the first n prompts of the (deterministic) stream; `generate(batch)` the teacher's
    completions. With rejection, prompts are drawn in order until `needed` are correct or the draw limit
    is reached (then whatever was kept, or an error when nothing was)."""
    limit = records_needed(cfg, needed)
    if cfg.rejection:
        unscorable = [p.source for p in prompts(1) if p.score is None]
        if unscorable:
            raise UserError(f"recovery.teacher_data.rejection: prompts from '{unscorable[0]}' have no task to score them")

    def kept(stream):
        rows = [cache.rows[p.id] for p in stream if p.id in cache.rows]
        return [r for r in rows if not cfg.rejection or (r["score"] is not None and r["score"] >= 1.0)]

    drawn = needed
    while True:
        stream = prompts(drawn)
        missing = [p for p in stream if p.id not in cache.rows]
        bar = None
        if missing and progress:
            from tqdm.auto import tqdm

            bar = tqdm(desc="teacher solutions", unit="prompt", total=len(missing))
        for i in range(0, len(missing), cfg.batch_size):
            batch = missing[i : i + cfg.batch_size]
            texts = generate(batch)
            cache.add([{"id": p.id, "source": p.source, "prompt": p.prompt, "completion": t,
                        "score": p.score(t) if p.score is not None else None} for p, t in zip(batch, texts)])
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
        have = kept(stream)
        if len(have) >= needed or not cfg.rejection or drawn >= limit or len(stream) < drawn:
            break
        rate = max(len(have) / drawn, 1.0 / cfg.max_draw_factor)  # draw what the acceptance so far says is needed
        drawn = min(limit, drawn + max(cfg.batch_size, math.ceil((needed - len(have)) / rate)))
    out = [{"prompt": r["prompt"], "completion": r["completion"]} for r in have[:needed]]
    if not out:
        raise UserError(
            f"recovery.teacher_data.rejection: the teacher solved none of the {drawn} prompts drawn "
            f"(cache {cache.path}); turn rejection off or give easier prompts"
        )
    return out


def cache_meta(prompts: PromptsConfig, cfg: TeacherDataConfig, teacher: str, task_options: dict) -> dict:
    """The settings a cache is valid for (compared on reuse): prompt source, teacher and decoding."""
    p = asdict(prompts)
    p.pop("count")
    return {"prompts": p, "teacher": teacher, "task_options": task_options,
            **{k: getattr(cfg, k) for k in ("max_new_tokens", "temperature")}}


@dataclass
class TeacherCorrectionConfig:
    """Teacher correction (Minitron): fine-tune the teacher briefly on recovery data before distilling from
    it, so that it fits the data the student will see. Done once per run; the corrected teacher is kept in
    the run directory (teacher/) and reused on resume."""

    method: str = "cpt"
    """The tuner that fine-tunes the teacher (cpt | sft | ...)."""
    data: str | None = None
    """Its data: a text source or a local file (default: recovery.data)."""
    records: int = bounded(256, ge=1)
    """Records of that data it trains on (the first ones: the data recovery starts with)."""
    config: dict = field(default_factory=lambda: {"max_steps": 20})
    """The tuner's config (max_steps, learning_rate, ...; `prunetune ls -v` lists the keys)."""
