"""Helpers for `prunetune eval` and `prunetune score`: tasks from flags, the results table and JSON."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from prunetune.errors import UserError
from prunetune.table import format_table

FILE_TASKS = ("gsm8k", "math", "mbpp", "perplexity")


def add_task_flags(p) -> None:
    p.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="[TASK=]FILE",
        help="local data for file-backed tasks (gsm8k, math, mbpp, perplexity); TASK=FILE to target one",
    )
    p.add_argument(
        "--num-fewshot", type=int, default=None, help="few-shot demonstrations for math tasks (0-8)"
    )
    p.add_argument(
        "--task-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra task option passed to every task, e.g. size=200, chat=true, gym=gsm_symbolic",
    )


def _parse_value(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def task_options(args) -> dict:
    """--task-option KEY=VALUE items as a mapping (values read as YAML: numbers, booleans, [lists])."""
    extra = {}
    for item in args.task_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--task-option '{item}' must be KEY=VALUE")
        extra[key] = _parse_value(value)
    return extra


def build_tasks(names: list[str], args) -> list:
    from prunetune.tasks import get_task

    data: dict[str, str] = {}
    default_data = None
    for item in args.data:
        name, sep, path = item.partition("=")
        if sep and name in names:
            data[name] = path
        elif sep and not Path(item).exists():
            raise UserError(f"--data {item}: task '{name}' is not in --tasks")
        else:
            default_data = item
    for path in [*data.values(), *([default_data] if default_data else [])]:
        if not Path(path).exists():
            raise UserError(f"--data '{path}' does not exist")
    extra = task_options(args)
    tasks = []
    for name in names:
        opts = dict(extra)
        if name in data or (default_data and name in FILE_TASKS):
            opts["data"] = data.get(name, default_data)
        if args.num_fewshot is not None:
            opts["num_fewshot"] = args.num_fewshot
        try:
            tasks.append(get_task(name, **opts))
        except TypeError as e:
            raise UserError(f"task '{name}' does not take that option: {e}") from None
    return tasks


def check_out(out: str | None) -> None:
    """--out and the predictions directory derived from it, both checked before any work."""
    from prunetune.io import check_output_path

    if out:
        check_output_path(out, "--out")
        check_output_path(predictions_dir(out), "--out (its predictions directory)")


def predictions_dir(out: str | None) -> Path | None:
    return Path(out).with_suffix("").with_name(Path(out).stem + ".predictions") if out else None


@contextlib.contextmanager
def staged_predictions(out: str | None):
    """A staging directory for the predictions of `--out` (None without one), removed if the work fails;
    a killed command's staging is removed by the next one writing that --out."""
    from prunetune.io import clean_stale_temps, staging_path

    final = predictions_dir(out)
    if final is None:
        yield None
        return
    clean_stale_temps(final.parent, final.name)
    stage = staging_path(final)
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_results(out: str | None, results: list[dict], stage: Path | None = None) -> None:
    """The results JSON at --out, the staged predictions moved beside it first (their paths rewritten)."""
    from prunetune.io import atomic_write_text, write_error

    if not out:
        return
    final = predictions_dir(out)
    try:
        if stage is not None and stage.exists():
            os.rename(stage, final)
            for r in results:
                if r.get("predictions"):
                    r["predictions"] = str(final / Path(r["predictions"]).name)
        atomic_write_text(out, json.dumps(results, indent=2) + "\n")
    except OSError as e:
        raise write_error(e, out) from None


def print_table(results: list[dict]) -> None:
    cols = ["accuracy", "mean_length", "truncation_rate"]
    if any(r["metrics"].get("mean_thinking_tokens") or r["metrics"].get("truncated_in_thinking") for r in results):
        cols += ["mean_thinking_tokens", "truncated_in_thinking"]
    if any("seconds_per_solved" in r["metrics"] for r in results):
        cols.append("seconds_per_solved")
    for r in results:
        cols += [k for k in r["metrics"] if k not in cols and k.startswith(("pass@", "nll", "perplexity"))]
    rows = [[r["task"], str(r["n"]), *[_fmt(r["metrics"].get(c)) for c in cols]] for r in results]
    print(format_table(["task", "n", *cols], rows))


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


