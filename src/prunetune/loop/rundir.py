"""The run directory: what a loop run writes, how it resumes, and every rank-0 / barrier decision.

Layout: recipe.yaml, log.txt, metrics.jsonl (one line per event), baseline/, iteration_NN/ (a stock
checkpoint with its cumulative plan history, and nothing else at its top level, so serving engines
that load every *.safetensors in a model directory load it as written), iteration_NN/state/ (its
evaluation and predictions, the loop state and the carried AdamW moments), `final` (a link to the
last accepted iteration), summary.json and the report. Every iteration is written atomically
(temporary directory, then rename), so a killed run resumes from the last one. Under torchrun every
rank calls the same methods; only rank 0 writes, and the others wait at the barriers here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from prunetune import dist
from prunetune.checkpoint import count_params, load_model, read_history, save_checkpoint
from prunetune.errors import UserError
from prunetune.io import (
    append_jsonl,
    atomic_dir,
    atomic_write_json,
    atomic_write_text,
    clean_stale_temps,
    crash_point,
)
from prunetune.loop.family import members
from prunetune.loop.runfiles import (
    _OLD_LAYOUT,
    EVAL_FILE,
    OPTIMIZER_FILE,
    STATE,
    STATE_FILE,
    LoopState,
    clear_run_files,
    is_run_dir,
    read_baseline,
    read_eval,
    read_metrics,
    read_run_yaml,
    read_state,
)
from prunetune.models.shape import ModelShape

log = logging.getLogger("prunetune.loop")


@dataclass
class Resumed:
    """The last accepted iteration, as a resumed run continues from it."""

    state: LoopState
    model: object
    tokenizer: object
    history: list
    """The cumulative plan history saved with its checkpoint."""
    optimizer_state: dict | None
    """The carried AdamW moments (None: none were saved)."""
    metrics: dict
    """Its evaluation (what the gate's `previous` compares against)."""


class RunDir:
    def __init__(self, out: str | Path, recipe_text: str, *, restart: bool = False):
        self.out = Path(out)
        self.recipe_text = recipe_text
        self.restart = restart
        self.t0 = time.time()
        self._lock = None

    # ---- start -------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Claim the directory for this recipe (or resume the same recipe's run), lock it, start the log."""
        saved = self.out / "recipe.yaml"
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"output_dir '{self.out}' is a file, not a directory")
        if self.out.exists() and any(not p.name.startswith(".") for p in self.out.iterdir()):
            if not is_run_dir(self.out):  # never a run: nothing in it is prunetune's to remove
                raise UserError(
                    f"output_dir '{self.out}' is not empty and holds no prunetune run; prunetune leaves it as it "
                    "is: give an output_dir that is new, empty or a run's"
                )
            if not self.restart:
                old, new = _as_current(read_run_yaml(saved), self.out), yaml.safe_load(self.recipe_text)
                old.pop("output_dir", None)  # a run directory moved or copied elsewhere resumes there
                new.pop("output_dir", None)
                if old != new:
                    raise UserError(
                        f"output_dir '{self.out}' holds a run of a different recipe (differs at "
                        f"'{_first_difference(old, new)}'); use another output_dir or --restart"
                    )
                self.check_files()
        dist.barrier()
        if dist.is_main():
            self.out.mkdir(parents=True, exist_ok=True)
            self._take_lock()
            if self.restart:
                kept = clear_run_files(self.out)
                if kept:
                    log.info("--restart kept %d file(s) prunetune did not write: %s", len(kept), ", ".join(kept[:5]))
            clean_stale_temps(self.out)
            clean_stale_temps(self.out / "family")
            _move_state_of_old_runs(self.out)
            done = self.iteration_dirs()
            completed = read_state(done[-1])["completed"] if done else 0
            self._truncate_metrics(completed if self.baseline() else -1)
            atomic_write_text(saved, self.recipe_text)
            _log_to(self.out / "log.txt")
        dist.barrier()

    def check_files(self) -> None:
        """Read what a resume will read (baseline, metrics, the last iteration's state and evaluation) before
        anything is written, so a corrupt or hand-edited file is one line naming it, not a traceback later."""
        read_baseline(self.out)
        read_metrics(self.out)
        done = self.iteration_dirs()
        if done:
            read_state(done[-1])
            read_eval(done[-1])

    def work(self, name: str, *, clear: bool = False) -> Path:
        """A scratch directory under .work/ (removed when the run finishes); `clear` empties it first."""
        path = self.out / ".work" / name
        if clear and dist.is_main():
            shutil.rmtree(path, ignore_errors=True)
        return path

    def save_for_serving(self, model, tok) -> Path:
        """The model as it is now, written to .work/served (for the vllm evaluation backend)."""
        path = self.work("served")
        if dist.is_main():
            save_checkpoint(model, tok, path, replace=True)
        dist.barrier()
        return path

    def metric(self, record: dict) -> None:
        if dist.is_main():
            append_jsonl(self.out / "metrics.jsonl", {"wall_time": round(time.time() - self.t0, 3), **record})

    # ---- baseline ----------------------------------------------------------------------------
    def baseline(self) -> dict | None:
        return read_baseline(self.out)

    def save_baseline(self, model, metrics: dict, eval_tmp: Path, shape: ModelShape) -> dict:
        baseline = {**count_params(model), "metrics": metrics, "shape": shape.to_dict()}
        if dist.is_main():
            with atomic_dir(self.out / "baseline", replace=True) as tmp:
                if eval_tmp.exists():
                    shutil.copytree(eval_tmp, tmp / "eval")
                atomic_write_json(tmp / "eval.json", baseline)
            self.metric({"event": "baseline", "iteration": 0, **shape_fields(model), **count_params(model), "metrics": metrics})
        dist.barrier()
        return baseline

    # ---- iterations --------------------------------------------------------------------------
    def iteration_dirs(self) -> list[Path]:
        return sorted(p for p in self.out.glob("iteration_[0-9][0-9]") if (p / STATE_FILE).is_file())

    def resume(self, dtype, chunk_size: int = 0) -> Resumed | None:
        """The last accepted iteration (None: there is none yet).

        `chunk_size`: records per iteration of runs saved before the state counted records (fixed chunks).
        """
        done = self.iteration_dirs()
        if not done:
            return None
        last = done[-1]
        saved = read_state(last)
        saved.setdefault("records_used", saved.get("chunks_used", 0) * chunk_size)
        state = LoopState(**{k: v for k, v in saved.items() if k in LoopState.__dataclass_fields__})
        model, tok = load_model(last, dtype)
        opt = _load_optimizer_state(last / OPTIMIZER_FILE) if (last / OPTIMIZER_FILE).is_file() else None
        metrics = read_eval(last)["metrics"]
        log.info("resuming after iteration %d", state.completed)
        return Resumed(state, model, tok, read_history(last), opt, metrics)

    def restore(self, model_name: str, dtype):
        """(model, tokenizer, optimizer state) of the last accepted iteration, or the input model."""
        done = self.iteration_dirs()
        model, tok = load_model(done[-1] if done else model_name, dtype)
        opt = None
        if done and (done[-1] / OPTIMIZER_FILE).is_file():
            opt = _load_optimizer_state(done[-1] / OPTIMIZER_FILE)
        return model, tok, opt

    def save_iteration(self, model, tok, iteration: int, history: list, metrics: dict, state: LoopState,
                       optimizer_state, eval_tmp: Path) -> Path:
        target = self.out / f"iteration_{iteration:02d}"
        if dist.is_main():
            with atomic_dir(target, replace=True) as tmp:
                save_checkpoint(model, tok, tmp / "_model", history=history)
                crash_point(f"save:{iteration}")
                for f in (tmp / "_model").iterdir():
                    f.rename(tmp / f.name)
                (tmp / "_model").rmdir()
                (tmp / STATE).mkdir()
                if eval_tmp.exists():
                    shutil.copytree(eval_tmp, tmp / STATE / "eval")
                atomic_write_json(tmp / EVAL_FILE, {"iteration": iteration, **count_params(model), "metrics": metrics})
                if optimizer_state is not None:
                    _save_optimizer_state(optimizer_state, tmp / OPTIMIZER_FILE)
                atomic_write_json(tmp / STATE_FILE, asdict(state))
            self._point_final(target)
        dist.barrier()
        return target

    def apply_keep_policy(self, keep: str, best: Path | None) -> None:
        """Drop the weights of iterations that `keep` (all | last | best) does not keep."""
        if keep == "all" or not dist.is_main():
            return
        dirs = self.iteration_dirs()
        kept = {dirs[-1]} | ({best} if keep == "best" and best else set())
        for d in dirs:
            if d not in kept:
                for f in [*d.glob("*.safetensors"), *d.glob(f"{STATE}/*.safetensors")]:
                    f.unlink()

    def iteration_metrics(self) -> list[tuple[Path, dict]]:
        return [(d, read_eval(d)["metrics"]) for d in self.iteration_dirs()]

    # ---- end ---------------------------------------------------------------------------------
    def finish(self, *, model: str, one_shot: bool, baseline: dict, state: LoopState, planned_iterations: int) -> dict:
        """Build and write summary.json (this is its one writer), write the report, remove the scratch space."""
        from prunetune.loop.report import write_report

        summary = {
            "model": model,
            "one_shot": one_shot,
            "baseline": {k: baseline[k] for k in ("params", "non_embedding_params", "metrics")},
            "final": None,
            "completed_iterations": state.completed,
            "planned_iterations": planned_iterations,
            "recovery_steps": state.recovery_steps,
            "tokens": state.tokens,
            "rollbacks": state.rollbacks,
            "stopped_reason": state.stopped_reason,
        }
        done = self.iteration_dirs()
        if done:
            ev = read_eval(done[-1])
            final = {k: ev[k] for k in ("params", "non_embedding_params", "metrics")}
            final["iteration"] = ev["iteration"]
            from transformers import AutoConfig

            final["shape"] = ModelShape.from_config(AutoConfig.from_pretrained(done[-1])).to_dict()
            summary["final"] = final
            summary["non_embedding_params_kept"] = (
                final["non_embedding_params"] / summary["baseline"]["non_embedding_params"]
            )
        summary["family"] = members(self.out)
        summary["wall_time"] = round(time.time() - self.t0, 1)
        if dist.is_main():
            atomic_write_json(self.out / "summary.json", summary)
            shutil.rmtree(self.out / ".work", ignore_errors=True)
            write_report(self.out)
        dist.barrier()
        return summary

    # ---- internals ---------------------------------------------------------------------------
    def _point_final(self, target: Path) -> None:
        link, tmp = self.out / "final", self.out / ".final.tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(target.name)
        tmp.replace(link)

    def _truncate_metrics(self, completed: int) -> None:
        """Keep the events of what is on disk (baseline: 0, accepted iterations: 1..completed; -1: none).

        Whatever was killed, an interrupted iteration runs again and logs again, so its lines (and a
        line torn by the kill) go now, not twice into the report.
        """
        path = self.out / "metrics.jsonl"
        if dist.is_main() and path.exists():
            kept = [m for m in read_metrics(self.out) if m["iteration"] <= completed]
            atomic_write_text(path, "".join(json.dumps(m) + "\n" for m in kept))

    def _take_lock(self) -> None:
        """One run per directory: an flock the kernel drops when the holder dies (no stale lock)."""
        fd = os.open(self.out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(
                f"output_dir '{self.out}' is in use by another prunetune run ({holder}); "
                "wait for it to finish or use another output_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        self._lock = fd

    @contextlib.contextmanager
    def claimed(self):
        """prepare(), then hold the directory's lock until the block ends, however it ends."""
        self.prepare()
        try:
            yield self
        finally:
            self.release()

    def release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def _move_state_of_old_runs(out: Path) -> None:
    """Runs written before the state/ subfolder kept the loop state beside the weights: move it."""
    for d in out.glob("iteration_[0-9][0-9]"):
        if (d / "loop_state.json").is_file():
            (d / STATE).mkdir(exist_ok=True)
            for name in _OLD_LAYOUT:
                if (d / name).exists():
                    os.replace(d / name, d / STATE / name)


SHAPE_FIELDS = ("hidden_size", "intermediate_size", "num_key_value_heads", "num_attention_heads", "num_hidden_layers",
                "num_experts", "moe_intermediate_size", "shared_expert_intermediate_size")
"""Every width a metrics event records (the MoE ones are 0 on dense models), as ModelShape names them."""


def shape_fields(model) -> dict:
    s = ModelShape.from_config(model.config)
    return {name: getattr(s, name) for name in SHAPE_FIELDS}


def _as_current(saved, out: Path) -> dict:
    """A saved recipe read with today's schema, so keys added since (at their defaults) compare equal."""
    from prunetune.config import build
    from prunetune.loop.recipe import Recipe

    try:
        return build(Recipe, saved).to_dict()
    except UserError as e:
        raise UserError(
            f"output_dir '{out}' holds a run whose recipe this version cannot read ({e}); "
            "use another output_dir or --restart"
        ) from None


def _first_difference(a, b, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
    return prefix or "(top level)"


def _save_optimizer_state(state: dict, path: Path) -> None:
    from safetensors.torch import save_file

    flat = {f"{name}::{k}": v.detach().contiguous().cpu() for name, d in state.items() for k, v in d.items()}
    save_file(flat, str(path))


def _load_optimizer_state(path: Path) -> dict:
    from safetensors.torch import load_file

    out: dict = {}
    for key, v in load_file(str(path)).items():
        name, k = key.rsplit("::", 1)
        out.setdefault(name, {})[k] = v
    return out


def _log_to(path: Path) -> None:
    root = logging.getLogger("prunetune")
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        if getattr(h, "_prunetune", False):
            root.removeHandler(h)
    fh = logging.FileHandler(path)
    fh.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    sh = logging.StreamHandler()
    sh.setFormatter(logging.Formatter("[prunetune] %(message)s"))
    for h in (fh, sh):
        h._prunetune = True
        root.addHandler(h)
    root.propagate = False
