"""Run lm-evaluation-harness tasks on the in-memory model (wrapped as lm-eval's HFLM).

Users with hub access get the standard benchmarks (gsm8k_cot, minerva_math, mbpp, ...) through
`prunetune eval --lm-eval-tasks`; offline, any task whose data is local works, e.g. a custom task
YAML with `dataset_path: json` and `dataset_kwargs: {data_files: {test: FILE}}` in a directory
passed as `--lm-eval-include`. Results use the same {task, n, metrics, predictions} shape as
`evaluate`, with lm-eval's metric names ("exact_match,strict-match") kept as they are, plus
`accuracy` copied from the first acc / exact_match metric so tables line up.
Reasoning traces: the delimiters prunetune's tasks use (`think`, default the chat template's) reach lm-eval
as `think_end_token` (it scores only the text after the trace's end; unlike prunetune's tasks it keeps an
unclosed trace's text), and `enable_thinking` as the chat-template switch, which turns lm-eval's
`apply_chat_template` on (the switch lives in the template).
"""

from __future__ import annotations

from pathlib import Path

from prunetune.errors import UserError, did_you_mean


def _is_number(v) -> bool:
    try:
        float(v)
        return not isinstance(v, (str, bool))
    except (TypeError, ValueError):
        return False


def _accuracy(metrics: dict) -> float | None:
    for prefix in ("acc,", "exact_match,", "pass@1,", "acc_norm,"):
        for k, v in metrics.items():
            if k.startswith(prefix) and isinstance(v, (int, float)):
                return float(v)
    return None


def run_lm_eval(
    model,
    tokenizer,
    tasks: list[str],
    *,
    include_path: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    num_fewshot: int | None = None,
    max_new_tokens: int | None = None,
    seed: int = 0,
    think="auto",
    enable_thinking: bool | None = None,
) -> list[dict]:
    """Evaluate `model` on lm-eval `tasks`; unknown task names are a UserError with did-you-mean.

    `think` / `enable_thinking` are the task options of tasks/thinking.py, checked the same way."""
    from prunetune.tasks.thinking import Reasoning

    try:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise UserError("--lm-eval-tasks needs the lm-eval package (pip install lm-eval)") from None
    if include_path is not None and not Path(include_path).is_dir():
        raise UserError(f"--lm-eval-include '{include_path}' is not a directory")
    tm = None
    if include_path:  # indexing lm-eval's thousands of built-in YAMLs is slow; skip it when possible
        tm = TaskManager(include_path=str(include_path), include_defaults=False)
        if not set(tasks) <= set(tm.all_tasks):
            tm = None
    tm = tm or TaskManager(include_path=str(include_path) if include_path else None)
    known = set(tm.all_tasks)
    for name in tasks:
        if name not in known:
            raise UserError(f"unknown lm-eval task '{name}'{did_you_mean(name, known)}")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    reasoning = Reasoning(think, enable_thinking)
    reasoning.bind(tokenizer)
    think_end = reasoning.delimiters[1] if reasoning.delimiters else None
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, think_end_token=think_end,
              enable_thinking=enable_thinking)
    gen_kwargs = {"max_gen_toks": max_new_tokens} if max_new_tokens else None
    res = simple_evaluate(
        model=lm,
        tasks=list(tasks),
        task_manager=tm,
        limit=limit,
        num_fewshot=num_fewshot,
        gen_kwargs=gen_kwargs,
        apply_chat_template=enable_thinking is not None,
        log_samples=False,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    out = []
    for name, raw in res["results"].items():
        metrics = {k: float(v) for k, v in raw.items() if k != "alias" and _is_number(v)}
        acc = _accuracy(metrics)
        if acc is not None:
            metrics = {"accuracy": acc, **metrics}
        n = res.get("n-samples", {}).get(name, {}).get("effective")
        out.append({"task": f"lm_eval:{name}", "n": n, "metrics": metrics, "predictions": None})
    return out
