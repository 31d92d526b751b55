"""Recovery from the dense model's own outputs: prompts from tasks or files, the teacher's cached solutions,
and teacher correction. Shared by the loop and `prunetune recover`.

The mechanics (the cache, rejection, resume) are recovery/teacher_data.py's; this module supplies what
that layer may not import: the tasks that make and score prompts, and generation.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prunetune.errors import UserError
from prunetune.recovery.teacher_data import (
    GenerationCache,
    Prompt,
    PromptsConfig,
    TeacherDataConfig,
    cache_meta,
    check_teacher,
    collect,
)

log = logging.getLogger("prunetune.loop")


def check_sources(prompts: PromptsConfig, key: str = "recovery.prompts.sources") -> None:
    """Every source a task, an existing file or a text source; at least one (before any model loads)."""
    from prunetune.data import check_source
    from prunetune.tasks import TASKS, gym_names

    if not prompts.sources:
        raise UserError(f"{key}: no prompt source given (a task name, a JSONL file of prompts or a text source)")
    for s in prompts.sources:
        if s in TASKS or s in gym_names():
            continue
        check_source(s, key)


def _file_prompts(source: str, prompts: PromptsConfig, tokenizer, n: int) -> list[Prompt]:
    from prunetune.data import SOURCES, is_registered, load_records

    records = SOURCES.get(source)(n, prompts.seed) if is_registered(source) else load_records(source)[:n]
    out = []
    for i, r in enumerate(records):
        if isinstance(r.get(prompts.prompt_field), str):
            text = r[prompts.prompt_field]
        elif isinstance(r.get("question"), str):
            text = f"Question: {r['question']}\nAnswer:"
        else:
            raise UserError(f"{source}: record {i} has no '{prompts.prompt_field}' (recovery.prompts.prompt_field) or 'question'")
        if not text.strip():
            raise UserError(f"{source}: record {i}: the prompt is empty")
        if prompts.chat:
            text = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                 add_generation_prompt=True)
        out.append(Prompt(f"{source}:{i}", text, source))
    if not out:
        raise UserError(f"prompt source '{source}' is empty")
    return out


def prompt_stream(prompts: PromptsConfig, tokenizer, task_options: dict):
    """n -> the first n prompts, the sources taking turns (each prompt a Prompt with its scorer and stops)."""
    from prunetune.tasks import TASKS, get_task, gym_names

    tasks = {s: get_task(s, **task_options.get(s, {})) for s in prompts.sources if s in TASKS or s in gym_names()}

    def first(n: int) -> list[Prompt]:
        k = len(prompts.sources)
        per = -(-n // k)
        columns = []
        for s in prompts.sources:
            if s in tasks:
                task = tasks[s]
                col = []
                for e in task.examples(split="train", limit=per, seed=prompts.seed):
                    col.append(Prompt(e.id, task.build_prompt(e, tokenizer), s, stop=task.stop,
                                      score=lambda c, e=e, t=task: t.score(e, c)))
            else:
                col = _file_prompts(s, prompts, tokenizer, per)
            columns.append(col)
        mixed = [col[i] for i in range(per) for col in columns if i < len(col)]
        return mixed[:n]

    return first


def teacher_generate(teacher, tokenizer, cfg: TeacherDataConfig, seed: int = 0):
    """batch of Prompt -> the teacher's completions (greedy, or sampled at cfg.temperature), each cut at its stops."""
    from prunetune.tasks.generation import generate

    def run(batch: list[Prompt]) -> list[str]:
        out: list[str | None] = [None] * len(batch)
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(batch):
            groups.setdefault(tuple(p.stop or ()), []).append(i)
        for stop, idx in groups.items():
            gens = generate(teacher, tokenizer, [batch[i].prompt for i in idx], max_new_tokens=cfg.max_new_tokens,
                            batch_size=cfg.batch_size, do_sample=cfg.temperature > 0,
                            temperature=cfg.temperature or 1.0, stop=list(stop) or None, seed=seed)
            for i, g in zip(idx, gens):
                out[i] = g.text
        return out  # type: ignore[return-value]

    return run


def open_cache(path: str | Path, prompts: PromptsConfig, cfg: TeacherDataConfig, teacher_name: str,
               task_options: dict) -> GenerationCache:
    """The generations cache at `path` (cfg.cache wins), checked against these settings (corrupt: an error)."""
    opts = {s: task_options.get(s, {}) for s in prompts.sources}
    return GenerationCache(cfg.cache or path, cache_meta(prompts, cfg, str(teacher_name), opts))


def teacher_records(teacher_fn, tokenizer, prompts: PromptsConfig, cfg: TeacherDataConfig, cache: GenerationCache,
                    task_options: dict, needed: int, *, progress: bool = True) -> list[dict]:
    """`needed` (prompt, completion) records from the cache, the teacher (`teacher_fn()` loads it, only if
    something is missing) completing the rest."""
    check_teacher(tokenizer, prompts)
    stream = prompt_stream(prompts, tokenizer, task_options)
    state = {}

    def generate(batch):
        if "fn" not in state:
            state["fn"] = teacher_generate(teacher_fn(), tokenizer, cfg)
        return state["fn"](batch)

    records = collect(stream, generate, cfg, cache, needed, progress=progress)
    log.info("teacher data: %d records (%d generations cached in %s)", len(records), len(cache.rows), cache.path)
    return records


def prompt_records(prompts: PromptsConfig, tokenizer, task_options: dict, needed: int) -> list[dict]:
    """Prompts only (on-policy distillation: the student writes the completions), as {"prompt"} records."""
    stream = prompt_stream(prompts, tokenizer, task_options)(needed)
    return [{"prompt": stream[i % len(stream)].prompt} for i in range(needed)]  # a short file goes round again


# ---- the loop's side: one cache, one set of records and one corrected teacher per run ------------------
TEACHER_METHODS = ("distill", "onpolicy")
"""Tuners that learn from a teacher's distributions (the others may still learn from its solutions)."""
CACHE_NAME = "teacher_data.jsonl"
CORRECTED_NAME = "teacher"


def check_recipe(recipe, *, for_run: bool = False) -> None:
    """The teacher options fit the method and each other (and, for a run, the prompt sources exist)."""
    r = recipe.recovery
    if r.teacher_data is not None:
        if r.prompts is None:
            raise UserError("recovery.teacher_data needs recovery.prompts (the prompts the teacher solves)")
        fmt = (r.config or {}).get("format", "text")
        if r.method not in ("sft", "distill") or (r.method == "distill" and fmt != "prompt_completion"):
            raise UserError("recovery.teacher_data trains on (prompt, solution) pairs: use method sft, or distill "
                            "with recovery.config.format: prompt_completion")
    elif r.prompts is not None and r.method != "onpolicy":
        raise UserError("recovery.prompts is read by recovery.teacher_data or method onpolicy; add one or drop it")
    if r.teacher_correction is not None:
        if r.method not in TEACHER_METHODS and r.teacher_data is None:
            raise UserError(f"recovery.teacher_correction: method {r.method} learns from no teacher "
                            "(use distill, onpolicy, or recovery.teacher_data)")
        if r.teacher != "dense":
            raise UserError("recovery.teacher_correction corrects the dense teacher: needs recovery.teacher: dense")
        from prunetune.recovery import resolve_config

        resolve_config(r.teacher_correction.method, r.teacher_correction.config, "recovery.teacher_correction.config")
    if for_run:
        from prunetune.data import check_source

        if r.prompts is not None:
            check_sources(r.prompts)
        if r.teacher_data is not None and r.teacher_data.cache and not Path(r.teacher_data.cache).exists():
            from prunetune.io import check_output_path

            check_output_path(r.teacher_data.cache, "recovery.teacher_data.cache")
        if r.teacher_correction is not None:
            check_source(r.teacher_correction.data or r.data, "recovery.teacher_correction.data")


def records_needed(recipe) -> int:
    """The records a run trains on (rollbacks aside): prompts.count, else what the budget's chunks take."""
    from prunetune.loop.budget import records_for
    from prunetune.recovery import resolve_config

    r = recipe.recovery
    if r.prompts is not None and r.prompts.count:
        return r.prompts.count
    if r.total_steps:
        return records_for(r.total_steps, r.chunk_size, resolve_config(r.method, r.config).max_steps)
    return r.chunk_size * recipe.iterations


def run_cache(recipe, out: Path) -> GenerationCache | None:
    r = recipe.recovery
    if r.teacher_data is None:
        return None
    return open_cache(Path(out) / CACHE_NAME, r.prompts, r.teacher_data, _teacher_name(recipe),
                      recipe.evaluation.task_options)


def _teacher_name(recipe) -> str:
    r = recipe.recovery
    name = str(recipe.model)
    if r.teacher_correction is not None:  # another teacher: its solutions are not the dense model's
        name += f" corrected {r.teacher_correction.method} {sorted(r.teacher_correction.config.items())}"
    return name


def run_records(recipe, tokenizer, cache: GenerationCache | None, dense_teacher, *, progress: bool = True):
    """The records a run trains on when it makes them itself: the teacher's solutions (teacher_data) or the
    prompts alone (onpolicy with recovery.prompts); None: recovery.data's chunks as usual."""
    from prunetune.checkpoint import load_model

    r = recipe.recovery
    needed = records_needed(recipe)
    if r.teacher_data is not None:
        def load():
            return dense_teacher if dense_teacher is not None else load_model(recipe.model, recipe.dtype)[0]

        return teacher_records(load, tokenizer, r.prompts, r.teacher_data, cache, recipe.evaluation.task_options,
                               needed, progress=progress)
    if r.prompts is not None:
        return prompt_records(r.prompts, tokenizer, recipe.evaluation.task_options, needed)
    return None


def corrected(teacher, tokenizer, recipe, out: Path, *, progress: bool = True):
    """`teacher` fine-tuned by recovery.teacher_correction (kept in `out`/teacher and reloaded from there), or
    `teacher` itself when no correction is asked."""
    tc = recipe.recovery.teacher_correction
    if tc is None:
        return teacher
    from prunetune.checkpoint import load_model, save_checkpoint

    saved = Path(out) / CORRECTED_NAME
    if (saved / "config.json").is_file():
        return load_model(saved, recipe.dtype, with_tokenizer=False)[0].eval()
    res = correct_teacher(teacher, tokenizer, tc, recipe.recovery.data, recipe.seed, work_dir=Path(out) / ".teacher_work",
                          progress=progress)
    save_checkpoint(res, tokenizer, saved, replace=True)
    return res.eval()


def correct_teacher(teacher, tokenizer, tc, default_data: str, seed: int, *, work_dir: Path, progress: bool = True):
    """Teacher correction: `tc.method` on the first `tc.records` records of `tc.data` (or `default_data`)."""
    from prunetune.data import take
    from prunetune.recovery import recover

    teacher.requires_grad_(True)
    records = take(tc.data or default_data, 0, tc.records, seed=seed)
    log.info("teacher correction: %s on %d records", tc.method, len(records))
    res = recover(teacher, tokenizer, tc.method, records, tc.config, work_dir=work_dir, progress=progress)
    import shutil

    shutil.rmtree(work_dir, ignore_errors=True)
    return res.model
