"""The Prune-Tune Loop: score -> cut -> recover -> evaluate -> gate, one iteration at a time, resumable.

Every accepted iteration is written atomically as `iteration_NN/` (a stock checkpoint, the cumulative
plan history, its evaluation and the loop state), so a killed run resumes from the last one. A gate
violation either stops the run or rolls back to the previous checkpoint and retries with half the
step: the water never heats faster than the frog can take.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from prunetune import dist
from prunetune.checkpoint import count_params, load_model, read_history, resolve_model_path, save_checkpoint
from prunetune.config import Recipe, dump_recipe
from prunetune.errors import UserError
from prunetune.io import (
    append_jsonl,
    atomic_dir,
    atomic_write_json,
    atomic_write_text,
    clean_stale_temps,
    read_jsonl,
)
from prunetune.models.shape import ModelShape
from prunetune.schedule import Step, constraints_of, plan_steps, validate_steps

log = logging.getLogger("prunetune.loop")
STATE_FILE = "loop_state.json"
OPTIMIZER_FILE = "optimizer_state.safetensors"


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


# ---------------------------------------------------------------------------------------------
def shape_of(recipe: Recipe) -> ModelShape:
    """The model's shape from its config alone (no weights)."""
    from transformers import AutoConfig

    if recipe.model_config:
        p = Path(recipe.model_config)
        if not p.is_file():
            raise UserError(f"model_config '{recipe.model_config}' does not exist")
        data = json.loads(p.read_text())
        return ModelShape.from_config(AutoConfig.for_model(data.pop("model_type"), **data))
    name = resolve_model_path(recipe.model)
    if name.startswith("tiny-random-"):
        from prunetune.models.tiny import tiny_config

        return ModelShape.from_config(tiny_config(name[len("tiny-random-") :]))
    if name == "reference":
        from prunetune.reference import reference_dir

        name = str(reference_dir())
    from prunetune.models import get_adapter

    data = json.loads((Path(name) / "config.json").read_text())
    get_adapter(type("C", (), {"model_type": data.get("model_type")})())
    return ModelShape.from_config(AutoConfig.from_pretrained(name))


def validate_recipe(
    recipe: Recipe, *, for_run: bool = False
) -> tuple[ModelShape, list[Step], list[ModelShape]]:
    """Every key, name and constraint checked before any weight is loaded; returns the planned shapes.

    Local files (model, data, calibration) are checked only `for_run`: a paper-scale recipe must
    validate and plan on a machine that holds none of them.
    """
    from prunetune.pruning import importance
    from prunetune.recovery import TUNERS, resolve_config
    from prunetune.tasks import get_task

    p = recipe.prune
    for key, value, choices in (
        ("prune.mlp_importance", p.mlp_importance, importance.MLP_SCORERS),
        ("prune.kv_importance", p.kv_importance, importance.KV_SCORERS),
        ("prune.layer_importance", p.layer_importance, importance.LAYER_SCORERS),
    ):
        if value not in choices:
            from prunetune.errors import did_you_mean

            raise UserError(
                f"{key}: unknown scorer '{value}'{did_you_mean(value, choices)}; choose from {', '.join(choices)}"
            )
    if recipe.recovery.method != "none":
        if recipe.recovery.method not in TUNERS:
            from prunetune.errors import did_you_mean

            raise UserError(
                f"recovery.method: unknown method '{recipe.recovery.method}'"
                f"{did_you_mean(recipe.recovery.method, TUNERS + ('none',))}; choose from {', '.join(TUNERS)}, none"
            )
        cfg = resolve_config(recipe.recovery.method, recipe.recovery.config)
        if recipe.recovery.global_schedule and cfg.get("max_steps") is None:
            raise UserError("recovery.global_schedule needs recovery.config.max_steps (steps per iteration)")
    for name in recipe.evaluation.tasks:
        get_task(name, **recipe.evaluation.task_options.get(name, {}))
    if recipe.recovery.method == "grpo":
        name = recipe.recovery.reward_task or recipe.gate.task or recipe.evaluation.tasks[0]
        get_task(
            name, **(recipe.recovery.reward_task_options or recipe.evaluation.task_options.get(name, {}))
        )
    gate_task = recipe.gate.task or (recipe.evaluation.tasks[0] if recipe.evaluation.tasks else None)
    if recipe.gate.max_drop is not None and gate_task not in recipe.evaluation.tasks:
        raise UserError(
            f"gate.task '{gate_task}' must be one of evaluation.tasks ({', '.join(recipe.evaluation.tasks)})"
        )
    if for_run:
        resolve_model_path(recipe.model)
        files = [("prune.calibration", p.calibration), ("prune.general", p.general)]
        if recipe.recovery.method not in ("none", "grpo"):
            files.append(("recovery.data", recipe.recovery.data))
        for key, value in files:
            if value and value != "arith" and not Path(value).exists():
                raise UserError(f"{key}: '{value}' does not exist")
    shape = shape_of(recipe)
    steps = plan_steps(recipe, shape)
    shapes = validate_steps(shape, steps, constraints_of(recipe))
    return shape, steps, shapes


# ---------------------------------------------------------------------------------------------
class Loop:
    def __init__(self, recipe: Recipe, *, restart: bool = False, progress: bool = True):
        self.recipe = recipe
        self.out = Path(recipe.output_dir)
        self.progress = progress
        self.restart = restart
        self.dense_shape, self.steps, _ = validate_recipe(recipe, for_run=True)
        self.t0 = time.time()

    # ---- output directory ----------------------------------------------------------------
    def _prepare_dir(self) -> None:
        text = dump_recipe(self.recipe)
        saved = self.out / "recipe.yaml"
        if self.out.exists() and any(self.out.iterdir()):
            if self.restart:
                if dist.is_main():
                    shutil.rmtree(self.out)
            elif not saved.is_file():
                raise UserError(
                    f"output_dir '{self.out}' is not empty and holds no prunetune run; use another or --restart"
                )
            else:
                old = yaml.safe_load(saved.read_text())
                new = yaml.safe_load(text)
                if old != new:
                    key = _first_difference(old, new)
                    raise UserError(
                        f"output_dir '{self.out}' holds a run of a different recipe (differs at '{key}'); "
                        "use another output_dir or --restart"
                    )
        dist.barrier()
        if dist.is_main():
            self.out.mkdir(parents=True, exist_ok=True)
            clean_stale_temps(self.out)
            if not saved.is_file():
                atomic_write_text(saved, text)
        dist.barrier()

    def _metric(self, record: dict) -> None:
        record = {"wall_time": round(time.time() - self.t0, 3), **record}
        if dist.is_main():
            append_jsonl(self.out / "metrics.jsonl", record)

    # ---- pieces --------------------------------------------------------------------------
    def _evaluate(self, model, tok, out_dir: Path | None) -> dict:
        from prunetune.tasks import get_task
        from prunetune.tasks.evaluate import evaluate

        e = self.recipe.evaluation
        results = {}
        for name in e.tasks:
            task = get_task(name, **e.task_options.get(name, {}))
            r = evaluate(
                model,
                tok,
                task,
                limit=e.limit,
                max_new_tokens=e.max_new_tokens,
                batch_size=e.batch_size,
                seed=self.recipe.seed,
                out_dir=out_dir if dist.is_main() else None,
                progress=self.progress,
            )
            results[name] = r["metrics"]
        return results

    def _gate_value(self, metrics: dict) -> float | None:
        g = self.recipe.gate
        name = g.task or (self.recipe.evaluation.tasks[0] if self.recipe.evaluation.tasks else None)
        return metrics.get(name, {}).get("accuracy") if name else None

    def _calibration(self, tok, iteration: int):
        from prunetune.calibration import calibration_inputs

        p = self.recipe.prune
        batches, general = calibration_inputs(
            tok,
            p.calibration,
            p.general,
            field=p.text_field,
            limit=p.calibration_samples,
            max_length=p.max_length,
            seed=self.recipe.seed * 1000 + iteration,
        )
        return batches, general

    def _budget_multiplier(self) -> int:
        return self.recipe.iterations if self.recipe.one_shot else 1

    def _recover(self, model, tok, state: LoopState, teacher, optimizer_state, iteration: int):
        from prunetune.recovery import GlobalSchedule, recover, resolve_config

        r = self.recipe.recovery
        mult = self._budget_multiplier()
        cfg = dict(r.config)
        for key in ("max_steps", "max_tokens"):
            if cfg.get(key) is not None:
                cfg[key] = cfg[key] * mult
        size = r.chunk_size * mult
        chunk_index = state.chunks_used
        reward_funcs = None
        if r.method == "grpo":
            from prunetune.tasks import get_task
            from prunetune.tasks.reward import grpo_records, reward_function

            name = r.reward_task or self.recipe.gate.task or self.recipe.evaluation.tasks[0]
            task = get_task(
                name, **(r.reward_task_options or self.recipe.evaluation.task_options.get(name, {}))
            )
            examples = task.examples(
                split="train", limit=size, seed=self.recipe.seed * 1000 + chunk_index + 1
            )
            records = grpo_records(task, examples, tok)
            reward_funcs = [reward_function(task, r.correctness_weight, r.format_weight, examples)]
        else:
            from prunetune.recovery_data import chunk

            records = chunk(r.data, chunk_index, size, seed=self.recipe.seed)
        schedule = None
        if r.global_schedule:
            resolved = resolve_config(r.method, cfg)
            per = resolved["max_steps"]
            remaining = len(state.queue)  # includes this iteration
            schedule = GlobalSchedule(
                total_steps=state.accepted_recovery_steps + per * remaining,
                start_step=state.accepted_recovery_steps,
                warmup_ratio=resolved["warmup_ratio"],  # only the run's first steps fall inside it
                lr_scheduler_type=resolved["lr_scheduler_type"],
            )
        result = recover(
            model,
            tok,
            r.method,
            records,
            cfg,
            teacher=teacher,
            reward_funcs=reward_funcs,
            work_dir=self.out / ".work" / f"iteration_{iteration:02d}",
            optimizer_state=optimizer_state if r.carry_optimizer else None,
            schedule=schedule,
            progress=self.progress,
        )
        state.chunks_used += 1
        return result

    # ---- persistence ---------------------------------------------------------------------
    def _iteration_dirs(self) -> list[Path]:
        return sorted(p for p in self.out.glob("iteration_[0-9][0-9]") if (p / STATE_FILE).is_file())

    def _save_iteration(
        self,
        model,
        tok,
        iteration: int,
        history: list,
        metrics: dict,
        state: LoopState,
        optimizer_state,
        eval_tmp: Path,
    ) -> Path:
        target = self.out / f"iteration_{iteration:02d}"
        if dist.is_main():
            with atomic_dir(target, replace=True) as tmp:
                save_checkpoint(model, tok, tmp / "_model", history=history)
                _crash_point(f"save:{iteration}")
                for f in (tmp / "_model").iterdir():
                    f.rename(tmp / f.name)
                (tmp / "_model").rmdir()
                if eval_tmp.exists():
                    shutil.copytree(eval_tmp, tmp / "eval")
                counts = count_params(model)
                atomic_write_json(tmp / "eval.json", {"iteration": iteration, **counts, "metrics": metrics})
                if optimizer_state is not None:
                    _save_optimizer_state(optimizer_state, tmp / OPTIMIZER_FILE)
                atomic_write_json(tmp / STATE_FILE, state.__dict__)
            self._point_final(target)
        dist.barrier()
        return target

    def _point_final(self, target: Path) -> None:
        link = self.out / "final"
        tmp = self.out / ".final.tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(target.name)
        tmp.replace(link)

    def _apply_keep_policy(self, best: Path | None) -> None:
        if self.recipe.keep == "all" or not dist.is_main():
            return
        dirs = self._iteration_dirs()
        keep = {dirs[-1]} | ({best} if self.recipe.keep == "best" and best else set())
        for d in dirs:
            if d not in keep:
                for f in d.glob("*.safetensors"):
                    f.unlink()

    # ---- the loop ------------------------------------------------------------------------
    def run(self) -> dict:
        recipe = self.recipe
        dist.init_if_needed()
        self._prepare_dir()
        _log_to(self.out / "log.txt")
        log.info(
            "run %s -> %s (%s)",
            recipe.model,
            self.out,
            "one-shot" if recipe.one_shot else f"{len(self.steps)} iterations",
        )
        model, tok = load_model(recipe.model, recipe.dtype)
        dense_counts = count_params(model)

        baseline_file = self.out / "baseline" / "eval.json"
        if baseline_file.is_file():
            baseline = json.loads(baseline_file.read_text())
        else:
            log.info("evaluating the dense model")
            work = self.out / ".work" / "baseline_eval"
            metrics = self._evaluate(model, tok, work)
            baseline = {**dense_counts, "metrics": metrics, "shape": self.dense_shape.to_dict()}
            if dist.is_main():
                with atomic_dir(self.out / "baseline", replace=True) as tmp:
                    if work.exists():
                        shutil.copytree(work, tmp / "eval")
                    atomic_write_json(tmp / "eval.json", baseline)
                self._metric(
                    {
                        "event": "baseline",
                        "iteration": 0,
                        **_shape_fields(model),
                        **dense_counts,
                        "metrics": metrics,
                    }
                )
            dist.barrier()

        done = self._iteration_dirs()
        optimizer_state = None
        if done:
            last = done[-1]
            state = LoopState(**json.loads((last / STATE_FILE).read_text()))
            model, tok = load_model(last, recipe.dtype)
            history = read_history(last)
            if (last / OPTIMIZER_FILE).is_file():
                optimizer_state = _load_optimizer_state(last / OPTIMIZER_FILE)
            self._truncate_metrics(state.completed)
            log.info("resuming after iteration %d", state.completed)
        else:
            state = LoopState(queue=[s.to_dict() for s in self.steps])
            history = []
        last_metrics = (
            json.loads((done[-1] / "eval.json").read_text())["metrics"] if done else baseline["metrics"]
        )
        dense_teacher = None
        r = recipe.recovery
        if r.method == "distill" and r.teacher == "dense":
            dense_teacher, _ = load_model(recipe.model, recipe.dtype)

        from tqdm.auto import tqdm

        bar = tqdm(
            total=state.completed + len(state.queue),
            initial=state.completed,
            desc="prune-tune loop",
            disable=not self.progress or not dist.is_main(),
            unit="iter",
        )
        while state.queue and state.stopped_reason is None:
            iteration = state.completed + 1
            step = Step(**state.queue[0])
            teacher = None
            if r.method == "distill":
                teacher = dense_teacher if r.teacher == "dense" else copy.deepcopy(model).eval()
            model, plan, optimizer_state = self._prune(model, tok, step, iteration, optimizer_state)
            dist.check_same_model(model, f"pruning in iteration {iteration}")
            counts = count_params(model)
            self._metric(
                {
                    "event": "prune",
                    "iteration": iteration,
                    **_shape_fields(model),
                    **counts,
                    "step": step.to_dict(),
                    "attempt": state.retries,
                }
            )
            eval_tmp = self.out / ".work" / f"eval_{iteration:02d}"
            shutil.rmtree(eval_tmp, ignore_errors=True)
            if recipe.evaluation.after_prune:
                pm = self._evaluate(model, tok, None)
                self._metric({"event": "eval_after_prune", "iteration": iteration, **counts, "metrics": pm})
            if r.method != "none":
                res = self._recover(model, tok, state, teacher, optimizer_state, iteration)
                model, optimizer_state = res.model, (res.optimizer_state if r.carry_optimizer else None)
                state.recovery_steps += res.steps
                state.tokens += res.tokens_seen
                for m in res.metrics:
                    self._metric({"event": "recover", "iteration": iteration, "attempt": state.retries, **m})
                dist.check_same_model(model, f"recovery in iteration {iteration}")
                self._metric(
                    {
                        "event": "recovery_done",
                        "iteration": iteration,
                        "steps": res.steps,
                        "tokens": res.tokens_seen,
                        "world_size": res.info.get("world_size", 1),
                    }
                )
                res_steps = res.steps
                _crash_point(f"recover:{iteration}")
            else:
                res_steps = 0
            del teacher
            metrics = self._evaluate(model, tok, eval_tmp)
            self._metric(
                {
                    "event": "eval",
                    "iteration": iteration,
                    **_shape_fields(model),
                    **counts,
                    "metrics": metrics,
                    "recovery_steps": state.recovery_steps,
                    "tokens": state.tokens,
                }
            )
            verdict = self._gate(metrics, baseline["metrics"], last_metrics)
            if verdict is not None:
                self._metric(
                    {"event": "gate", "iteration": iteration, "violation": verdict, "step": step.to_dict()}
                )
                log.info("iteration %d: gate violated (%s)", iteration, verdict)
                halves = step.halves(recipe.schedule.round_to)
                if (
                    recipe.gate.on_violation == "rollback"
                    and halves
                    and state.retries < recipe.gate.max_retries
                ):
                    state.retries += 1
                    state.rollbacks += 1
                    state.queue = [h.to_dict() for h in halves] + state.queue[1:]
                    bar.total += 1
                    model, tok, optimizer_state = self._restore()
                    log.info("rolled back; retrying with steps %s", [h.to_dict() for h in halves])
                    continue
                state.stopped_reason = f"gate violated at iteration {iteration}: {verdict}"
                break
            state.queue.pop(0)
            state.completed = iteration
            state.retries = 0
            state.accepted_recovery_steps += res_steps
            history = history + [plan.to_dict()]
            self._save_iteration(model, tok, iteration, history, metrics, state, optimizer_state, eval_tmp)
            last_metrics = metrics
            self._apply_keep_policy(self._best_iteration())
            log.info(
                "iteration %d: %s non-embedding params, %s",
                iteration,
                f"{counts['non_embedding_params']:,}",
                _fmt_metrics(metrics),
            )
            bar.update(1)
        bar.close()
        summary = self._write_summary(baseline, state)
        if dist.is_main():
            shutil.rmtree(self.out / ".work", ignore_errors=True)
            from prunetune.report import write_report

            write_report(self.out)
        dist.barrier()
        return summary

    def _prune(self, model, tok, step: Step, iteration: int, optimizer_state):
        from prunetune.pruning.prune import StepSpec, prune_step

        p = self.recipe.prune
        spec = StepSpec(
            mlp_neurons=step.mlp_neurons,
            kv_groups=step.kv_groups,
            layers=step.layers,
            mlp_importance=p.mlp_importance,
            kv_importance=p.kv_importance,
            layer_importance=p.layer_importance,
            ptl_order=p.ptl_order,
        )
        batches, general = self._calibration(tok, iteration)
        plan, optimizer_state = prune_step(
            model,
            spec,
            batches,
            general=general,
            constraints=constraints_of(self.recipe),
            seed=self.recipe.seed,
            progress=self.progress,
            optimizer_state=optimizer_state,
        )
        plan.meta["iteration"] = iteration
        return model, plan, optimizer_state

    def _gate(self, metrics: dict, baseline: dict, previous: dict) -> str | None:
        g = self.recipe.gate
        if g.max_drop is None:
            return None
        ref = self._gate_value(baseline if g.against == "dense" else previous)
        now = self._gate_value(metrics)
        if ref is None or now is None:
            return None
        drop = ref - now
        return (
            None
            if drop <= g.max_drop
            else f"accuracy {now:.3f} is {drop:.3f} below the {g.against} {ref:.3f} (max_drop {g.max_drop})"
        )

    def _restore(self):
        done = self._iteration_dirs()
        src = done[-1] if done else self.recipe.model
        model, tok = load_model(src, self.recipe.dtype)
        opt = None
        if done and (done[-1] / OPTIMIZER_FILE).is_file():
            opt = _load_optimizer_state(done[-1] / OPTIMIZER_FILE)
        return model, tok, opt

    def _best_iteration(self) -> Path | None:
        best, best_acc = None, -1.0
        for d in self._iteration_dirs():
            acc = self._gate_value(json.loads((d / "eval.json").read_text())["metrics"])
            if acc is not None and acc >= best_acc:
                best, best_acc = d, acc
        return best

    def _truncate_metrics(self, completed: int) -> None:
        """Drop log lines of an iteration that was interrupted (it will run again)."""
        if not dist.is_main():
            return
        path = self.out / "metrics.jsonl"
        kept = [m for m in read_jsonl(path) if m.get("iteration", 0) <= completed]
        atomic_write_text(path, "".join(json.dumps(m) + "\n" for m in kept))

    def _write_summary(self, baseline: dict, state: LoopState) -> dict:
        done = self._iteration_dirs()
        final = None
        if done:
            ev = json.loads((done[-1] / "eval.json").read_text())
            final = {k: ev[k] for k in ("params", "non_embedding_params", "metrics")}
            final["iteration"] = ev["iteration"]
            final["shape"] = ModelShape.from_config(_config_of(done[-1])).to_dict()
        summary = {
            "model": self.recipe.model,
            "one_shot": self.recipe.one_shot,
            "baseline": {k: baseline[k] for k in ("params", "non_embedding_params", "metrics")},
            "final": final,
            "completed_iterations": state.completed,
            "planned_iterations": len(self.steps),
            "recovery_steps": state.recovery_steps,
            "tokens": state.tokens,
            "rollbacks": state.rollbacks,
            "stopped_reason": state.stopped_reason,
            "wall_time": round(time.time() - self.t0, 1),
        }
        if final:
            summary["non_embedding_params_kept"] = (
                final["non_embedding_params"] / baseline["non_embedding_params"]
            )
        if dist.is_main():
            atomic_write_json(self.out / "summary.json", summary)
        return summary


# ---------------------------------------------------------------------------------------------
def _config_of(path: Path):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path)


def _shape_fields(model) -> dict:
    s = ModelShape.from_config(model.config)
    return {
        "intermediate_size": s.intermediate_size,
        "num_key_value_heads": s.num_key_value_heads,
        "num_attention_heads": s.num_attention_heads,
        "num_hidden_layers": s.num_hidden_layers,
    }


def _fmt_metrics(metrics: dict) -> str:
    return ", ".join(f"{t} accuracy {m['accuracy']:.3f}" for t, m in metrics.items() if "accuracy" in m)


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


def _crash_point(name: str) -> None:
    """Fault injection for the resume tests: PRUNETUNE_CRASH_AT=recover:2 kills the process there (SIGKILL)."""
    import os
    import signal

    if os.environ.get("PRUNETUNE_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _log_to(path: Path) -> None:
    if not dist.is_main():
        return
    root = logging.getLogger("prunetune")
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        if getattr(h, "_prunetune", False):
            root.removeHandler(h)
    fh = logging.FileHandler(path)
    fh.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    fh._prunetune = True
    sh = logging.StreamHandler()
    sh.setFormatter(logging.Formatter("[prunetune] %(message)s"))
    sh._prunetune = True
    root.addHandler(fh)
    root.addHandler(sh)
    root.propagate = False


def run(recipe: Recipe, *, restart: bool = False, progress: bool = True) -> dict:
    return Loop(recipe, restart=restart, progress=progress).run()
