"""evaluate(): generate completions for a task's examples, score them, and write per-example predictions.

Metrics: `accuracy` (share of examples with score 1.0; for code tasks this is pass@1, and with
sampling it is the unbiased pass@1 over all samples), `mean_score`, `mean_length` (generated
tokens), `truncation_rate` (completions that hit the token budget AND have no extractable answer:
reasoning cut off mid-way), `budget_hit_rate` (all completions that hit the budget) and `pass@k`
for k in 1, 2, 5, 10, ... up to `num_samples` when sampling. Perplexity-style tasks (those with a
`measure` method) report their own metrics instead.
The cost of an answer (tasks/thinking.py splits a completion at its reasoning trace):
`mean_thinking_tokens` / `mean_answer_tokens` (the trace's tokens, re-encoded from its text, and the
rest), `truncated_in_thinking` (share of completions whose trace was still open when the budget ran
out: wrong, whatever their thinking held), `generation_seconds` (wall time of all generation) and
`seconds_per_solved` (generation_seconds / correct completions; None when none is correct).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from prunetune.io import atomic_write_text
from prunetune.tasks.generation import DEFAULT_MAX_NEW_TOKENS, generate
from prunetune.tasks.task import Task, check_limit
from prunetune.tasks.thinking import split_completion


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator of pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c,k)/C(n,k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def _ks(num_samples: int) -> list[int]:
    return [k for k in (1, 2, 5, 10, 20, 50, 100) if k <= num_samples]


def score_all(task: Task, examples, completions: list[str]) -> list[float]:
    """Scores for (example, completion) pairs; code tasks run their sandboxes in parallel."""
    if hasattr(task, "score_many"):
        return list(task.score_many(examples, completions))
    return [task.score(e, c) for e, c in zip(examples, completions)]


def evaluate(
    model,
    tokenizer,
    task: Task | str,
    *,
    limit: int | None = None,
    split: str = "test",
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    batch_size: int = 16,
    do_sample: bool = False,
    num_samples: int = 1,
    temperature: float = 0.8,
    top_p: float = 0.95,
    seed: int = 0,
    out_dir: str | Path | None = None,
    progress: bool = True,
    examples=None,
    backend: str = "hf",
    model_dir: str | Path | None = None,
) -> dict:
    """Evaluate `model` on `task`; returns {"task", "n", "metrics", "predictions"} (see module doc).

    `backend` "vllm" generates with vLLM from `model_dir`, where `model` is saved (tasks/vllm_backend.py).
    """
    from prunetune.tasks import get_task

    if isinstance(task, str):
        task = get_task(task)
    check_limit(limit)
    assert num_samples >= 1
    if num_samples > 1:
        do_sample = True
    if examples is None:
        examples = task.examples(split=split, limit=limit, seed=seed)
    if hasattr(task, "measure"):
        metrics = task.measure(model, tokenizer, examples, batch_size=batch_size, progress=progress)
        return {"task": task.name, "n": len(examples), "metrics": metrics, "predictions": None}

    prompts = [task.build_prompt(e, tokenizer) for e in examples]
    flat_prompts = [p for p in prompts for _ in range(num_samples)]
    flat_examples = [e for e in examples for _ in range(num_samples)]
    gens = generate(
        model,
        tokenizer,
        flat_prompts,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        do_sample=do_sample,
        temperature=temperature,
        top_p=top_p,
        stop=task.stop,
        seed=seed,
        progress=progress,
        backend=backend,
        model_dir=str(model_dir) if model_dir is not None else None,
    )
    metrics, records = score_completions(
        task, flat_examples, [g.text for g in gens], gens=gens, prompts=flat_prompts, tokenizer=tokenizer
    )
    pred_path = write_predictions(out_dir, task.name, records)
    return {"task": task.name, "n": len(examples), "metrics": metrics, "predictions": pred_path}


def score_completions(
    task: Task, examples, completions: list[str], *, gens=None, prompts=None, tokenizer=None
) -> tuple[dict, list[dict]]:
    """(metrics, per-completion records) for completions of `examples` (repeat an example for its samples).

    The one place accuracy, format rate, lengths, truncation and pass@k are computed: evaluation after
    generation, `prunetune score` on completions made elsewhere, the loop and the reference build.
    `gens` (from tasks.generation) adds the length, truncation, thinking and time metrics; `tokenizer`
    counts the thinking tokens (without it a trace's tokens are counted as its share of the characters).
    """
    scores = score_all(task, examples, completions)
    extracted = [task.extract(c) for c in completions]
    splits = [split_completion(task, c) for c in completions]
    correct = [s >= 1.0 for s in scores]
    total = len(completions)
    metrics = {"accuracy": sum(correct) / total, "mean_score": sum(scores) / total}
    thinking = []
    if gens is not None:
        thinking = [_thinking_tokens(tokenizer, c, sp, g.num_tokens) for c, sp, g in zip(completions, splits, gens)]
        metrics["mean_length"] = sum(g.num_tokens for g in gens) / total
        metrics["truncation_rate"] = sum(g.truncated and x is None for g, x in zip(gens, extracted)) / total
        metrics["budget_hit_rate"] = sum(g.truncated for g in gens) / total
        metrics["mean_thinking_tokens"] = sum(thinking) / total
        metrics["mean_answer_tokens"] = metrics["mean_length"] - metrics["mean_thinking_tokens"]
        metrics["truncated_in_thinking"] = sum(g.truncated and sp.trace == "open" for g, sp in zip(gens, splits)) / total
        metrics["generation_seconds"] = sum(g.seconds for g in gens)
        metrics["seconds_per_solved"] = metrics["generation_seconds"] / sum(correct) if any(correct) else None
    metrics["format_rate"] = sum(task.format_ok(c) for c in completions) / total
    groups: dict[str, list[bool]] = {}
    for e, ok in zip(examples, correct):
        groups.setdefault(e.id, []).append(ok)
    n_min = min(len(v) for v in groups.values())
    for k in _ks(n_min) if n_min > 1 else []:
        metrics[f"pass@{k}"] = sum(pass_at_k(len(v), sum(v), k) for v in groups.values()) / len(groups)
    records, seen = [], {}
    for i, (e, c, x, s) in enumerate(zip(examples, completions, extracted, scores)):
        rec = {"id": e.id}
        if prompts is not None:
            rec["prompt"] = prompts[i]
        rec.update(completion=c, extracted=x, correct=s >= 1.0, score=s)
        rec["trace"] = splits[i].trace
        if gens is not None:
            rec.update(num_tokens=gens[i].num_tokens, truncated=gens[i].truncated, thinking_tokens=thinking[i],
                       answer_tokens=gens[i].num_tokens - thinking[i], seconds=gens[i].seconds)
        if n_min > 1:
            rec["sample"] = seen.get(e.id, 0)
            seen[e.id] = rec["sample"] + 1
        records.append(rec)
    return metrics, records


def _thinking_tokens(tokenizer, completion: str, split, num_tokens: int) -> int:
    """Generated tokens that belong to the trace: all of them when it never closed, none without one."""
    if split.trace == "open":
        return num_tokens
    if split.trace == "none" or not completion:
        return 0
    if tokenizer is None:
        return round(num_tokens * split.trace_end / len(completion))
    return min(num_tokens, len(tokenizer(completion[: split.trace_end], add_special_tokens=False)["input_ids"]))


def write_predictions(out_dir: str | Path | None, name: str, records: list[dict]) -> str | None:
    """`<out_dir>/<name>.predictions.jsonl` (atomically), or nothing when out_dir is None."""
    if out_dir is None:
        return None
    path = Path(out_dir) / f"{name}.predictions.jsonl"
    atomic_write_text(path, "\n".join(json.dumps(r) for r in records) + "\n")
    return str(path)
