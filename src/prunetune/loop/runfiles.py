"""A run directory's files as data: their layout, the loop state, and reading them back as untrusted
input (a kill, a full disk or a hand edit may have changed them), each error naming the file and the fix.
Which names are a run's own (the only ones `--restart` removes) is here too."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from prunetune.errors import UserError
from prunetune.io import COUNT, NUMBER, read_json, read_jsonl, shape_problem

STATE = "state"
"""Everything of an iteration that is not the model, in a subfolder no model loader reads."""
STATE_FILE = f"{STATE}/loop_state.json"
OPTIMIZER_FILE = f"{STATE}/optimizer_state.safetensors"
EVAL_FILE = f"{STATE}/eval.json"
_OLD_LAYOUT = ("loop_state.json", "optimizer_state.safetensors", "eval.json", "eval")


@dataclass
class LoopState:
    """What a resumed run needs besides the checkpoint itself."""

    completed: int = 0
    queue: list[dict] = field(default_factory=list)
    recovery_steps: int = 0
    """Optimizer steps spent so far, rolled-back attempts included (the compute the run cost)."""
    accepted_recovery_steps: int = 0
    """Optimizer steps of accepted iterations (positions the global learning-rate schedule)."""
    tokens: int = 0
    chunks_used: int = 0
    retries: int = 0
    rollbacks: int = 0
    stopped_reason: str | None = None
    records_used: int = 0
    """Recovery records taken so far from the data source (the next iteration's chunk starts there)."""


# ---- reading what a run wrote: untrusted input (a kill, a full disk or a hand edit may have changed it) ----
def _metrics(v) -> bool:
    """task -> {metric: value}, an accuracy (where there is one) a number."""
    return isinstance(v, dict) and all(
        isinstance(m, dict) and (m.get("accuracy") is None or NUMBER(m["accuracy"])) for m in v.values()
    )


EVAL_FIELDS = {"params": COUNT, "non_embedding_params": COUNT, "metrics": _metrics}
EVENT_FIELDS = {"event": str, "iteration": COUNT}
_STATE_TYPES = {"completed": COUNT, "queue": lambda q: isinstance(q, list) and all(isinstance(x, dict) for x in q)}
RESTART = "or rerun with --restart (it starts the run over)"


def _redo(d: Path) -> str:
    return f"remove '{d}' (the run redoes that iteration) {RESTART}"


def read_eval(d: Path) -> dict:
    """An iteration's (or family member's) state/eval.json, checked."""
    return read_json(d / EVAL_FILE, fix=_redo(d), fields={**EVAL_FIELDS, "iteration": COUNT})


def read_state(d: Path) -> dict:
    """An iteration's loop state, checked: its fields have the types LoopState gives them."""
    saved = read_json(d / STATE_FILE, fix=_redo(d), fields=_STATE_TYPES)
    for name, f in LoopState.__dataclass_fields__.items():
        v = saved.get(name)
        if name in saved and v is not None and not (COUNT(v) if f.type == "int" else True):
            raise UserError(f"'{d / STATE_FILE}': '{name}' has the wrong type ({type(v).__name__}); {_redo(d)}")
    return saved


def read_baseline(out: Path) -> dict | None:
    """baseline/eval.json (None before the run measured it), checked."""
    f = Path(out) / "baseline" / "eval.json"
    if not f.exists():
        return None
    fix = f"remove '{f.parent}' (the run measures it again) {RESTART}"
    base = read_json(f, fix=fix, fields=EVAL_FIELDS)
    if base["non_embedding_params"] == 0:
        raise UserError(f"'{f}': 'non_embedding_params' is 0; {fix}")
    return base


def read_metrics(out: Path) -> list[dict]:
    """metrics.jsonl: one event object per line ({event, iteration, ...}); a torn last line is dropped."""
    return read_jsonl(Path(out) / "metrics.jsonl", fields=EVENT_FIELDS, fix=f"remove that line {RESTART}")


def read_summary(out: Path) -> dict:
    """summary.json ({} before the run finished), checked."""
    f = Path(out) / "summary.json"
    if not f.exists():
        return {}
    fix = f"remove it (the next run or report writes it again) {RESTART}"
    summary = read_json(f, fix=fix)
    fam = summary.get("family", [])
    if not isinstance(fam, list) or any(shape_problem(m, {"keep": NUMBER, **EVAL_FIELDS}) for m in fam):
        raise UserError(f"'{f}': 'family' is not a list of family members; {fix}")
    return summary


def read_run_yaml(path: Path) -> dict:
    """A run's recipe.yaml (the recipe it runs), checked to be a mapping."""
    from prunetune.config import read_yaml

    try:
        return read_yaml(path, "the run's recipe")
    except UserError as e:
        raise UserError(f"{e}; use another output_dir {RESTART}") from None


RUN_FILES = ("recipe.yaml", "log.txt", "metrics.jsonl", "summary.json", "report.md", "report.html", "baseline",
             "family", "final", ".work", ".final.tmp", "recovery_loss.png")
"""What a run writes at the top of its output_dir (with iteration_NN, accuracy_vs_params_*.png and staging
siblings): the only names `--restart` removes."""
_RUN_PATTERNS = ("iteration_[0-9][0-9]", "accuracy_vs_params_*.png", ".*.tmp-*", ".*.old-*")


def is_run_dir(path: str | Path) -> bool:
    """Whether `path` holds a prunetune run: its recipe.yaml and at least one other file only a run writes
    (a recipe.yaml alone may be the user's own recipe)."""
    path = Path(path)
    return (path / "recipe.yaml").is_file() and any(
        (path / name).exists() for name in ("metrics.jsonl", "log.txt", "baseline", ".lock")
    )


def clear_run_files(out: Path) -> list[str]:
    """Remove what a run wrote in `out` (RUN_FILES and its patterns), nothing else; the names kept."""
    import fnmatch

    kept = []
    for p in sorted(out.iterdir()):
        if p.name == ".lock":
            continue
        if p.name in RUN_FILES or any(fnmatch.fnmatch(p.name, pat) for pat in _RUN_PATTERNS):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        else:
            kept.append(p.name)
    return kept
