"""A family of models from one run: a stock, servable checkpoint at each requested size (export.keeps).

A gradual run passes through every size on its way down; this writes the first accepted iteration at or
below each requested size as family/keep_<size>/ (the model, and its evaluation in state/), so one run
yields what Minitron builds with a separate prune-and-distil run per size. `prunetune pick` chooses.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from prunetune import dist
from prunetune.errors import UserError
from prunetune.io import NUMBER, atomic_dir, atomic_write_json, clean_stale_temps, crash_point
from prunetune.loop.runfiles import EVAL_FILE, RESTART, STATE, read_baseline, read_eval

log = logging.getLogger("prunetune.loop")


def export(out: Path, iteration_dir: Path, keeps: list[float]) -> None:
    """Write `iteration_dir`'s model as family/keep_<size>/ for each size in `keeps` it is the first
    accepted iteration at or below (hard links where the file system allows, else copies).

    Idempotent: a member already written stays, so a resumed run calls this again for its last accepted
    iteration and finishes an export a kill interrupted (the staging debris goes first)."""
    if not dist.is_main() or not keeps:
        return
    clean_stale_temps(out / "family")
    ev = read_eval(iteration_dir)
    base = read_baseline(out)
    kept = ev["non_embedding_params"] / base["non_embedding_params"]
    for keep in keeps:
        target = out / "family" / member_name(keep)
        if kept > keep or target.exists():
            continue
        with atomic_dir(target) as tmp:
            crash_point(f"family:{member_name(keep)}")
            for f in iteration_dir.iterdir():
                if f.is_file():
                    try:
                        os.link(f, tmp / f.name)
                    except OSError:
                        shutil.copy2(f, tmp / f.name)
            (tmp / STATE).mkdir()
            atomic_write_json(tmp / EVAL_FILE, {"keep": keep, "kept": kept, "iteration_dir": iteration_dir.name, **ev})
        log.info("family: %s (%.1f%% of the non-embedding parameters)", target.relative_to(out), 100 * kept)


def member_name(keep: float) -> str:
    return f"keep_{keep:.2f}"


def members(out: Path) -> list[dict]:
    """The family written so far, largest first: {keep, kept, iteration, dir, params, non_embedding_params, metrics}."""
    found = []
    for d in sorted((Path(out) / "family").glob("keep_*"), reverse=True):
        if (d / EVAL_FILE).is_file():
            ev = read_eval(d)
            if not NUMBER(ev.get("keep")) or not NUMBER(ev.get("kept")):
                raise UserError(f"'{d / EVAL_FILE}': 'keep' / 'kept' missing or not numbers; remove '{d}' {RESTART}")
            found.append({"keep": ev["keep"], "kept": ev["kept"], "iteration": ev["iteration"],
                          "dir": str(d.relative_to(out)), "params": ev["params"],
                          "non_embedding_params": ev["non_embedding_params"], "metrics": ev["metrics"]})
    return found
