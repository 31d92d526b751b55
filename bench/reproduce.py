"""Reproductions on the reference model: gradual vs one-shot compaction at EQUAL recovery budget.

Every configuration is the demo recipe (`recipes/demo.yaml`: the reference model to 50% of its
non-embedding parameters, MLP neurons every iteration plus one whole layer in the last) with
`key=value` overrides, run by `prunetune run` in its own subprocess (one torch thread each, at most
`--jobs` at once). Only the schedule changes between configurations; the total recovery budget
(steps x batch = tokens) is the same, because `one_shot=true` multiplies the per-iteration steps and
chunk by the number of iterations. The control is the DENSE model trained on the same budget with
`prunetune recover` on exactly the records the one-shot run trains on, evaluated with
`prunetune eval` on the same held-out problems (the evaluation set depends on the seed).

The reference model is copied to `<work>/reference-<sha8>` (runs go to `<work>/<name>/<sha8>/`) before the first run so that every run of
a grid uses the same weights even if the shipped model is rebuilt meanwhile. Runs resume: a run whose
`summary.json` exists is not repeated.

    .venv/bin/python bench/reproduce.py gradual_vs_oneshot --seeds 0 1 2 --jobs 2
    .venv/bin/python bench/reproduce.py gradual_vs_oneshot --recoveries distill --budgets light
    .venv/bin/python bench/reproduce.py gradual_vs_oneshot --write-only   # re-aggregate finished runs

`--grpo-prompts`, `--learning-rate` and `--keep` run a grid with other settings, in its own run
directories (e.g. `grpo_p8-light-one_shot-s0`); a combined `--write-only` table lists only the grids
run with its own settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

try:
    from bench.common import ROOT, cli, cpu_name, versions
except ImportError:  # run as `python bench/reproduce.py`
    from common import ROOT, cli, cpu_name, versions

RECIPE = "recipes/demo.yaml"
ITERATIONS = 4
# Per-iteration budget of a 4-iteration run; other iteration counts keep the product constant.
BUDGETS = {"light": {"max_steps": 30, "chunk_size": 480}, "generous": {"max_steps": 120, "chunk_size": 1920}}
EVAL = {"limit": 300, "max_new_tokens": 128, "batch_size": 64}
TRAIN = {"learning_rate": 1.0e-3, "warmup_ratio": 0.02, "per_device_train_batch_size": 16, "max_length": 128}
# GRPO spends the same optimizer steps; each step samples NUM_GENERATIONS completions for each of
# batch / NUM_GENERATIONS prompts, rewarded by the arith score, so a chunk is steps x prompts-per-step.
# `--grpo-prompts` widens the step (more prompts, so fewer steps whose 8 samples all score alike).
NUM_GENERATIONS = 8
GRPO_PROMPTS = 2
GRPO_TRAIN = {k: v for k, v in TRAIN.items() if k != "max_length"} | {
    "learning_rate": 1.0e-4,
    "num_generations": NUM_GENERATIONS,
    "max_completion_length": 96,
}


@dataclass(frozen=True)
class Knobs:
    """What a grid sets besides the schedule, the same for its runs and its control."""

    grpo_prompts: int = GRPO_PROMPTS
    learning_rate: float | None = None  # None: TRAIN's, or GRPO_TRAIN's for grpo
    keep: float | None = None  # target.keep for the pruned runs; None: the demo recipe's 0.5

    @property
    def for_control(self) -> Knobs:
        """The control prunes nothing, so the target does not set it apart."""
        return dataclasses.replace(self, keep=None)

    def train(self, recovery: str) -> dict:
        base = TRAIN
        if recovery == "grpo":
            base = GRPO_TRAIN | {"per_device_train_batch_size": self.grpo_prompts * NUM_GENERATIONS}
        return base if self.learning_rate is None else base | {"learning_rate": self.learning_rate}

    def records(self, recovery: str, steps: int, chunk: int) -> int:
        """Records per chunk: the budget's sequences, or for grpo the prompts its steps sample."""
        return steps * self.grpo_prompts if recovery == "grpo" else chunk

    def _changes(self, recovery: str) -> list[tuple[str, str]]:
        """(directory tag, table label) of each knob off its default."""
        out = []
        if recovery == "grpo" and self.grpo_prompts != GRPO_PROMPTS:
            out.append((f"p{self.grpo_prompts}", f"{self.grpo_prompts} prompts/step"))
        if self.learning_rate is not None:
            out.append((f"lr{self.learning_rate:g}", f"lr {self.learning_rate:g}"))
        if self.keep is not None:
            out.append((f"keep{self.keep:g}", f"keep {self.keep:g}"))
        return out

    def label(self, recovery: str) -> str:
        """The recovery's name in run directories: default grids keep the plain name (grpo, grpo_p8_lr1e-05)."""
        return "_".join([recovery, *(tag for tag, _ in self._changes(recovery))])

    def variant(self, recovery: str, variant: str | None) -> str | None:
        return ", ".join([*([variant] if variant else []), *(v for _, v in self._changes(recovery))]) or None

    def fields(self, recovery: str) -> dict:
        out = {"learning_rate": self.train(recovery)["learning_rate"]}
        return out | ({"prompts_per_step": self.grpo_prompts} if recovery == "grpo" else {})


# schedule label -> (iterations, overrides). `naive` is the paper's loop as first tried here (equal
# cuts, a fresh optimizer and warm-up per round); `better` is the loop's options (front-loaded cuts,
# AdamW moments carried across cuts, one global warm-up + cosine).
NAIVE = ["schedule.shape=equal", "recovery.carry_optimizer=false", "recovery.global_schedule=false"]
BETTER = ["schedule.shape=front_loaded", "recovery.carry_optimizer=true", "recovery.global_schedule=true"]
# `carry` is the demo's setting: like `better` but every iteration has its own warm-up + cosine (one
# cosine over all iterations leaves the last cut to its low-rate tail)
CARRY = ["schedule.shape=front_loaded", "recovery.carry_optimizer=true", "recovery.global_schedule=false"]
SCHEDULES = {
    "one_shot": ("one_shot", None, 4, ["one_shot=true"]),
    "gradual_4_naive": ("gradual_4", "naive", 4, NAIVE),
    "gradual_4_better": ("gradual_4", "better", 4, BETTER),
    "gradual_8_naive": ("gradual_8", "naive", 8, NAIVE),
    "gradual_8_better": ("gradual_8", "better", 8, BETTER),
    "gradual_4_carry": ("gradual_4", "carry", 4, CARRY),
    "gradual_8_carry": ("gradual_8", "carry", 8, CARRY),
    # distill only: every iteration distils from the DENSE model instead of the previous iteration's
    # (one-shot's teacher is the dense model either way, so this removes a difference besides the schedule)
    "gradual_4_carry_dense_teacher": (
        "gradual_4",
        "carry, dense teacher",
        4,
        [*CARRY, "recovery.teacher=dense"],
    ),
    "gradual_8_carry_dense_teacher": (
        "gradual_8",
        "carry, dense teacher",
        8,
        [*CARRY, "recovery.teacher=dense"],
    ),
}
# The sensitivity experiments vary one thing each and otherwise use the demo's options (CARRY). Their
# entries name their own layer schedule, so --layer-iteration does not apply to them.
_NO_MLP = ["target.keep=null", "schedule.mlp_iterations=[]"]
_EQUAL = ["schedule.shape=equal", "recovery.carry_optimizer=true", "recovery.global_schedule=false"]
SCHEDULES |= {
    # layers: a third of the layers (2 of 6) and nothing else, one per iteration vs both at once
    "layers_gradual": ("layers_gradual", None, 2, [*CARRY, *_NO_MLP, "schedule.layers={1: 1, 2: 1}"]),
    "layers_one_shot": (
        "layers_one_shot",
        None,
        2,
        [*CARRY, *_NO_MLP, "schedule.layers={1: 1, 2: 1}", "one_shot=true"],
    ),
    # step_size: MLP neurons only, to 50% of the non-embedding parameters in steps of ~5% vs ~17%
    "step_5pct": ("step_5pct", None, 10, [*_EQUAL, "schedule.layers={}"]),
    "step_17pct": ("step_17pct", None, 3, [*_EQUAL, "schedule.layers={}"]),
    # order: MLP neurons in iterations 1-3 and the layer in 4, or the layer in 1 and neurons in 2-4
    "neurons_then_layer": (
        "neurons_then_layer",
        None,
        4,
        [*CARRY, "schedule.mlp_iterations=[1, 2, 3]", "schedule.layers={4: 1}"],
    ),
    "layer_then_neurons": (
        "layer_then_neurons",
        None,
        4,
        [*CARRY, "schedule.mlp_iterations=[2, 3, 4]", "schedule.layers={1: 1}"],
    ),
    # adaptive: the demo's schedule with a fixed step vs the gate (rollback and halve the step when
    # accuracy falls more than 5 points below dense); the gate spends extra steps on its retries
    "fixed": ("fixed", None, 4, [*CARRY, "schedule.layers={1: 1}"]),
    "gated": (
        "gated",
        None,
        4,
        [*CARRY, "schedule.layers={1: 1}", "gate.max_drop=0.05", "gate.on_violation=rollback"],
    ),
}
# damage-aware loop (issue 17): the cuts sized by measured damage (at most 8, the last takes the rest)
# and/or the run's recovery steps allocated by each cut's measured damage, the last getting what is left
_DAMAGE = ["schedule.shape=damage", "schedule.max_damage=0.05", "recovery.allocation=damage"]
SCHEDULES |= {
    "gradual_8_damage": ("gradual_8", "damage-sized cuts, damage-allocated steps", 8, [*CARRY, *_DAMAGE]),
    "gradual_4_allocated": (
        "gradual_4",
        "carry, damage-allocated steps",
        4,
        [*CARRY, "recovery.allocation=damage"],
    ),
}
# one warm-up-stable-decay schedule across the run (Adapt-Pruner, arXiv 2502.03460) vs the carry
# schedule's warm-up + cosine per iteration and `better`'s one cosine across the run
SCHEDULES |= {
    "gradual_4_wsd": (
        "gradual_4",
        "carry, one WSD across the run",
        4,
        [*CARRY[:-1], "recovery.global_schedule=true", "recovery.config.lr_scheduler_type=wsd"],
    ),
}
# the same with a floor: every cut gets at least a share of the run's budget (FINDINGS 9's hand split gave
# the middle cuts 10 and 25 of 120 steps; the damage allocator alone gave them 3-16)
SCHEDULES |= {
    "gradual_4_floor": ("gradual_4", "carry, damage-allocated steps, 10% floor per cut", 4,
                        [*CARRY, "recovery.allocation=damage", "recovery.min_share=0.1"]),
    "gradual_8_damage_floor": ("gradual_8", "damage-sized cuts, damage-allocated steps, 5% floor per cut", 8,
                               [*CARRY, *_DAMAGE, "recovery.min_share=0.05"]),
    # FINDINGS 9's hand split ran each cut's recovery with a fresh AdamW: the same allocator without the carry
    "gradual_4_floor_fresh": ("gradual_4", "fresh AdamW per cut, damage-allocated steps, 10% floor per cut", 4,
                              ["schedule.shape=front_loaded", "recovery.carry_optimizer=false",
                               "recovery.global_schedule=false", "recovery.allocation=damage",
                               "recovery.min_share=0.1"]),
    # FINDINGS 9's hand split itself (5/10/25/80 steps of the light budget's 120), in the loop
    "gradual_4_split": ("gradual_4", "carry, hand split 5/10/25/80", 4,
                        [*CARRY, "recovery.allocation=split", "recovery.split=[5, 10, 25, 80]"]),
    "gradual_4_split_fresh": ("gradual_4", "fresh AdamW per cut, hand split 5/10/25/80", 4,
                              ["schedule.shape=front_loaded", "recovery.carry_optimizer=false",
                               "recovery.global_schedule=false", "recovery.allocation=split",
                               "recovery.split=[5, 10, 25, 80]"]),
    # the damage allocator over half the budget, the other half kept for the last cut (the final polish)
    "gradual_4_polish": ("gradual_4", "carry, damage-allocated steps, 10% floor, 50% kept for the last cut", 4,
                         [*CARRY, "recovery.allocation=damage", "recovery.min_share=0.1",
                          "recovery.final_share=0.5"]),
}
# recover until recovered (issue 17's "recover until recovered"): each cut trains until the held-out loss is
# back at its pre-cut value (checked every 5 steps), half the run kept for the last cut; per-iteration
# cosine (the split's) or one WSD across the run (the learning rate holds while a cut may stop early)
_RECOVERED = ["recovery.allocation=recovered", "recovery.tolerance=0", "recovery.check_every=5",
              "recovery.final_share=0.5"]
SCHEDULES |= {
    "gradual_4_recovered_tol": ("gradual_4", "carry, until within 0.02 nats, 50% kept for the last cut, one WSD", 4,
                                [*CARRY[:-1], "recovery.global_schedule=true", "recovery.config.lr_scheduler_type=wsd",
                                 *_RECOVERED[:1], "recovery.tolerance=0.02", *_RECOVERED[2:]]),
    "gradual_4_recovered": ("gradual_4", "carry, until recovered, 50% kept for the last cut", 4,
                            [*CARRY, *_RECOVERED]),
    "gradual_4_recovered_wsd": ("gradual_4", "carry, until recovered, 50% kept for the last cut, one WSD", 4,
                                [*CARRY[:-1], "recovery.global_schedule=true",
                                 "recovery.config.lr_scheduler_type=wsd", *_RECOVERED]),
}
# the hand split as a rule for any total and cut count: each cut 2.5x the steps of the one before
SCHEDULES |= {
    "gradual_4_geometric": ("gradual_4", "carry, geometric x2.5 steps per cut", 4,
                            [*CARRY, "recovery.allocation=geometric", "recovery.growth=2.5"]),
    "gradual_8_geometric": ("gradual_8", "carry, geometric x1.6 steps per cut", 8,
                            [*CARRY, "recovery.allocation=geometric", "recovery.growth=1.6"]),
    # growth 3: 3/9/27/81 of 120, the hand split's shape (5/10/25/80) as a rule
    "gradual_4_geometric3": ("gradual_4", "carry, geometric x3 steps per cut", 4,
                             [*CARRY, "recovery.allocation=geometric", "recovery.growth=3"]),
    "gradual_4_geometric4": ("gradual_4", "carry, geometric x4 steps per cut", 4,
                             [*CARRY, "recovery.allocation=geometric", "recovery.growth=4"]),
    "gradual_4_geometric3_dense_teacher": ("gradual_4", "carry, geometric x3 steps per cut, dense teacher", 4,
                                           [*CARRY, "recovery.allocation=geometric", "recovery.growth=3",
                                            "recovery.teacher=dense"]),
}
# issue 27: the splits of published gradual pipelines under one warm-up-stable-decay schedule across the run
# (the rate decays only in the last 10% of the 120 steps): Adapt-Pruner's linear split (stage i's share
# proportional to i: 12/24/36/48 of 120 over 4 cuts, given here as the split it fixes) and geometric x3
_WSD = [*CARRY[:-1], "recovery.global_schedule=true", "recovery.config.lr_scheduler_type=wsd"]
SCHEDULES |= {
    "gradual_4_linear_wsd": ("gradual_4", "linear 12/24/36/48, one WSD", 4,
                             [*_WSD, "recovery.allocation=split", "recovery.split=[12, 24, 36, 48]"]),
    "gradual_4_geometric3_wsd": ("gradual_4", "geometric x3, one WSD", 4,
                                 [*_WSD, "recovery.allocation=geometric", "recovery.growth=3"]),
    # the control: one-shot's single recovery under the same WSD (its default is a warm-up + cosine)
    "one_shot_wsd": ("one_shot", "one WSD", 4, ["one_shot=true", *_WSD]),
}
# the predicting allocation (loop/probe.py): each cut's first 4 steps a probe of the held-out loss, the
# cut's steps decided from the fitted curve, the last cut what is left
SCHEDULES |= {
    "gradual_4_probe": ("gradual_4", "probe (predicted split), one WSD", 4, [*_WSD, "recovery.allocation=probe"]),
}
TOTAL_STEPS_SCHEDULES = ("gradual_4_probe", "gradual_4_linear_wsd", "gradual_4_geometric3_wsd", "gradual_4_geometric3", "gradual_4_geometric4", "gradual_4_geometric3_dense_teacher", "gradual_4_recovered_tol",
                         "gradual_4_geometric", "gradual_8_geometric", "gradual_4_recovered", "gradual_4_recovered_wsd", "gradual_4_polish", "gradual_8_damage", "gradual_4_allocated", "gradual_4_floor", "gradual_8_damage_floor",
                         "gradual_4_floor_fresh", "gradual_4_split", "gradual_4_split_fresh")
"""Schedules that spend one run-wide budget (recovery.total_steps = the grid's total steps)."""
EXPERIMENTS = {
    "gradual_vs_oneshot": ["one_shot", "gradual_4_naive", "gradual_4_better", "gradual_4_carry"],
    "layers": ["layers_one_shot", "layers_gradual"],
    "step_size": ["step_17pct", "step_5pct"],
    "order": ["neurons_then_layer", "layer_then_neurons"],
    "adaptive": ["fixed", "gated"],
}
TITLES = {
    "gradual_vs_oneshot": "gradual vs one-shot at equal recovery budget (reference model, 50% non-embedding)",
    "layers": "two of six layers removed one per iteration vs both at once, equal budget",
    "step_size": "50% of non-embedding parameters in MLP steps of ~5% vs ~17% of the parameters, equal budget",
    "order": "MLP neurons then a layer vs a layer then MLP neurons, to the same 50% target, equal budget",
    "adaptive": "the adaptive gate (rollback + half step) vs a fixed step, and the steps each spends",
}


def env() -> dict:
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    e.update(TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    return e


def snapshot_reference(work: Path) -> Path:
    """Copy the shipped reference model under a name fixed by its weights' hash (reused if present)."""
    from prunetune.builtin.reference import reference_dir

    src = reference_dir()
    sha = hashlib.sha256((src / "model.safetensors").read_bytes()).hexdigest()[:8]
    dst = work / f"reference-{sha}"
    if not dst.is_dir():
        tmp = work / f".reference-{sha}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        tmp.rename(dst)
    return dst


def budget_for(budget: str, iterations: int) -> tuple[int, int]:
    """(max_steps, chunk_size) per iteration so that iterations x steps equals the 4-iteration total."""
    b = BUDGETS[budget]
    total_steps, total_records = b["max_steps"] * ITERATIONS, b["chunk_size"] * ITERATIONS
    assert total_steps % iterations == 0 and total_records % iterations == 0
    return total_steps // iterations, total_records // iterations


def loop_command(
    model: Path,
    out: Path,
    schedule: str,
    recovery: str,
    budget: str,
    seed: int,
    layer_at: str = "last",
    knobs: Knobs = Knobs(),
) -> list[str]:
    _, _, iterations, extra = SCHEDULES[schedule]
    # one_shot=true spends `iterations` x the per-iteration budget in its single recovery
    steps, chunk = budget_for(budget, iterations)
    chunk = knobs.records(recovery, steps, chunk)
    cmd = [*cli(), "run", RECIPE, f"model={model}", f"output_dir={out}", f"seed={seed}"]
    cmd += [f"iterations={iterations}"] + ([f"target.keep={knobs.keep}"] if knobs.keep is not None else [])
    if not any(x.startswith("schedule.layers=") for x in extra):
        cmd += [f"schedule.layers={{{1 if layer_at == 'first' else iterations}: 1}}"]
    cmd += [f"recovery.method={recovery}", f"recovery.chunk_size={chunk}"]
    if recovery == "grpo":  # the demo recipe's sft config keys are not all grpo's (reset before setting any)
        cmd += ["recovery.config={}", "recovery.data=null"]
    cmd += [f"recovery.config.max_steps={steps}", f"recovery.config.seed={seed}"]
    cmd += [f"recovery.config.{k}={v}" for k, v in knobs.train(recovery).items()]
    cmd += [f"evaluation.{k}={v}" for k, v in EVAL.items()]
    if recovery == "distill":  # the grids' teacher; `*_dense_teacher` schedules (the loop's default) override it
        cmd += ["recovery.teacher=previous"]
    if schedule in TOTAL_STEPS_SCHEDULES:
        cmd += [f"recovery.total_steps={steps * iterations}"]
    return cmd + extra


def control_method(recovery: str) -> str:
    """The control trains the dense model like the runs it controls: sft / grpo for those, else cpt."""
    return recovery if recovery in ("sft", "grpo") else "cpt"


def control_dir(work: Path, method: str, budget: str, seed: int) -> Path:
    # cpt controls keep their original name so earlier grids stay readable
    return work / (f"control-{budget}-s{seed}" if method == "cpt" else f"control-{method}-{budget}-s{seed}")


def control_commands(
    model: Path, out: Path, budget: str, seed: int, method: str = "cpt", knobs: Knobs = Knobs()
) -> tuple[list[list[str]], list[list[str]], Path]:
    """The dense model trained (`method`) on the one-shot run's exact records and steps, then evaluated."""
    from prunetune.data import chunk as data_chunk
    from prunetune.io import atomic_write_text

    steps, chunk = budget_for(budget, ITERATIONS)
    steps, chunk = steps * ITERATIONS, chunk * ITERATIONS
    out.mkdir(parents=True, exist_ok=True)
    ckpt, result = out / "model", out / "eval.json"
    recover = [*cli(), "recover", str(model), "--out", str(ckpt), "--method", method]
    if method == "grpo":  # prompts from the arith train split, its score as the reward
        recover += ["--task", "arith", "--chunk", "0", "--chunk-size", str(knobs.records(method, steps, chunk))]
    else:
        data = out / "data.jsonl"
        if not data.is_file():  # chunk 0 of size chunk x iterations: what one_shot=true trains on
            lines = [json.dumps(r) for r in data_chunk("arith", 0, chunk, seed=seed)]
            atomic_write_text(data, "\n".join(lines) + "\n")
        recover += ["--data", str(data)]
    recover += ["--quiet", f"max_steps={steps}", f"seed={seed}"]
    recover += [f"{k}={v}" for k, v in knobs.train(method).items()]
    evaluate = [*cli(), "eval", str(ckpt), "--tasks", "arith", "--seed", str(seed), "--out", str(result)]
    evaluate += ["--limit", str(EVAL["limit"]), "--max-new-tokens", str(EVAL["max_new_tokens"])]
    evaluate += ["--batch-size", str(EVAL["batch_size"]), "--no-progress"]
    todo = ([recover] if not (ckpt / "config.json").is_file() else []) + [evaluate]
    return [recover, evaluate], todo, result


def _run(cmds: list[list[str]], log: Path, done: Path) -> float:
    if done.is_file():
        return 0.0
    start = time.time()
    with open(log, "a") as f:
        for cmd in cmds:
            f.write("$ " + " ".join(cmd) + "\n")
            f.flush()
            rc = subprocess.run(cmd, cwd=ROOT, env=env(), stdout=f, stderr=subprocess.STDOUT).returncode
            if rc != 0:
                print(f"FAILED ({rc}): see {log}", flush=True)
                return -1.0
    wall = time.time() - start
    print(f"done {done.parent.name} in {wall:.0f} s", flush=True)
    return wall


# ---- aggregation -------------------------------------------------------------------------------
def aggregate(runs: list[dict], keys: tuple[str, ...], value: str = "accuracy") -> list[dict]:
    """Group `runs` by `keys`; mean, sample std, min, max and n of `value` per group (first-seen order)."""
    groups: dict[tuple, list[float]] = {}
    for r in runs:
        groups.setdefault(tuple(r.get(k) for k in keys), []).append(r[value])
    rows = []
    for key, vals in groups.items():
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        rows.append(
            {**dict(zip(keys, key)), "n": len(vals), "mean": statistics.fmean(vals), "std": sd}
            | {"min": min(vals), "max": max(vals)}
        )
    return rows


def collect(work: Path, recoveries, budgets, schedules, seeds, knobs: Knobs = Knobs()) -> dict:
    runs, controls, dense = [], [], {}
    for rec in recoveries:
        for budget in budgets:
            for sched in schedules:
                label, variant, iterations, _ = SCHEDULES[sched]
                variant = knobs.variant(rec, variant)
                for seed in seeds:
                    s = work / f"{knobs.label(rec)}-{budget}-{sched}-s{seed}" / "summary.json"
                    if not s.is_file():
                        continue
                    summ = json.loads(s.read_text())
                    dense[seed] = summ["baseline"]["metrics"]["arith"]["accuracy"]
                    # a run the gate stopped before any iteration was accepted ends with the dense model
                    final = summ["final"] or summ["baseline"]
                    runs.append(
                        {"schedule": label, "variant": variant, "recovery": rec, "budget": budget}
                        | {"seed": seed, "accuracy": final["metrics"]["arith"]["accuracy"]}
                        | {"non_embedding_params_kept": summ.get("non_embedding_params_kept", 1.0)}
                        | {"completed_iterations": summ["completed_iterations"]}
                        | {"stopped_reason": summ.get("stopped_reason")}
                        | {"iterations": iterations, "recovery_steps": summ["recovery_steps"]}
                        | {"tokens": summ["tokens"], "wall_time_s": summ["wall_time"]}
                        | {"rollbacks": summ.get("rollbacks", 0)}
                        | knobs.fields(rec)
                        | trajectory(s.parent / "metrics.jsonl")
                    )
    for method in dict.fromkeys(control_method(r) for r in recoveries):
        for budget in budgets:
            for seed in seeds:
                e = control_dir(work, knobs.for_control.label(method), budget, seed) / "eval.json"
                if not e.is_file():
                    continue
                res = json.loads(e.read_text())
                acc = _find_accuracy(res)
                steps = budget_for(budget, ITERATIONS)[0] * ITERATIONS
                controls.append(
                    {"schedule": "dense_control", "variant": knobs.for_control.variant(method, None)}
                    | {"recovery": method}
                    | {"budget": budget, "seed": seed}
                    | {"accuracy": acc, "non_embedding_params_kept": 1.0, "recovery_steps": steps}
                    | knobs.for_control.fields(method)
                )
    return {"runs": runs, "controls": controls, "dense_by_seed": dense}


def trajectory(metrics: Path) -> dict:
    """What the readings quote from a run's metrics.jsonl: the accuracy of every evaluation after an
    iteration, in order (attempts a gate rolled back included), the first and last logged recovery loss,
    and for GRPO the mean over its steps of TRL's frac_reward_zero_std (None where the run predates its
    logging) and the mean reward of its first and last 10 steps."""
    from prunetune.io import read_jsonl

    events = read_jsonl(metrics) if metrics.is_file() else []
    out = {"eval_accuracies": [e["metrics"]["arith"]["accuracy"] for e in events if e["event"] == "eval"]}
    losses = [e["loss"] for e in events if e["event"] == "recover" and "loss" in e]
    if losses:
        out["loss_first_last"] = [losses[0], losses[-1]]
    rewards = [e["reward"] for e in events if e["event"] == "recover" and "reward" in e]
    if rewards:
        zero = [e["frac_reward_zero_std"] for e in events if "frac_reward_zero_std" in e]
        out["frac_reward_zero_std"] = sum(zero) / len(zero) if zero else None
        out["reward_first_last_10"] = [sum(rewards[:10]) / len(rewards[:10]), sum(rewards[-10:]) / len(rewards[-10:])]
    return out


def _find_accuracy(res) -> float:
    """The arith accuracy in `prunetune eval --out` JSON (a list of {task, n, metrics})."""
    for entry in res:
        if entry["task"] == "arith":
            return entry["metrics"]["accuracy"]
    raise KeyError("arith accuracy")


# ---- writing -----------------------------------------------------------------------------------
def _versions() -> dict:
    return versions("python", "torch", "transformers", "trl", "accelerate", "prunetune")


def _cpu() -> str:
    name = cpu_name()
    return f"{name} ({os.cpu_count()} logical CPUs)" if name else platform.processor() or "?"


def _fmt(row: dict) -> str:
    return f"{row['mean']:.3f} ± {row['std']:.3f} (n={row['n']}, {row['min']:.3f}-{row['max']:.3f})"


def write_results(name: str, data: dict, meta: dict, out_dir: Path) -> None:
    from prunetune.io import atomic_write_json, atomic_write_text

    dense = list(data["dense_by_seed"].values())
    payload = {
        "dense_accuracy": statistics.fmean(dense) if dense else None,
        "dense_accuracy_by_seed": {str(k): v for k, v in sorted(data["dense_by_seed"].items())},
        "runs": data["runs"],
        "controls": data["controls"],
        "meta": meta,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / f"{name}.json", payload)

    keys = ("recovery", "budget", "schedule", "variant")
    rows = aggregate(data["runs"], keys) + aggregate(data["controls"], keys)
    knobs = Knobs(**meta.get("knobs", {}))
    walls = {tuple(r[k] for k in keys): r for r in aggregate(data["runs"], keys, "wall_time_s")}
    kept = {tuple(r[k] for k in keys): r for r in aggregate(data["runs"], keys, "non_embedding_params_kept")}
    lines = [
        f"# {name}: {TITLES[meta['experiment']]}",
        "",
        *(
            [f"Target overridden (`--keep {knobs.keep:g}`): keep {knobs.keep:g} of the non-embedding parameters.", ""]
            if knobs.keep is not None
            else []
        ),
        f"Reference model: `{meta['model']}` (sha256 of model.safetensors starts `{meta['model_sha8']}`); "
        f"dense accuracy (arith, {EVAL['limit']} held-out problems per seed, greedy): "
        + (", ".join(f"seed {k}: {v:.3f}" for k, v in payload["dense_accuracy_by_seed"].items()) or "n/a"),
        "",
        "Accuracy after the last iteration: mean ± sample std over seeds (n, min-max). "
        "`dense_control` is the dense model trained (method in the recovery column) on the one-shot run's "
        "records and steps.",
        "",
        "| recovery | budget | schedule | variant | recovery steps | kept (mean) | arith accuracy | wall s / run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    all_runs = data["runs"] + data["controls"]
    steps = {tuple(r.get(x) for x in keys): r for r in aggregate(all_runs, keys, "recovery_steps")}
    for row in rows:
        k = tuple(row.get(x) for x in keys)
        wall = f"{walls[k]['mean']:.0f}" if k in walls else "-"
        st = f"{steps[k]['mean']:.0f}" if k in steps else "-"
        kp = f"{kept[k]['mean']:.3f}" if k in kept else "1.000"
        lines.append(
            f"| {row['recovery']} | {row['budget']} | {row['schedule']} | {row.get('variant') or '-'} "
            f"| {st} | {kp} | {_fmt(row)} | {wall} |"
        )
    lines += [
        "",
        "Per run (accuracy, fraction of non-embedding parameters kept):",
        "",
        "| recovery | budget | schedule | variant | seed | accuracy | kept | steps | rollbacks | stopped |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["runs"] + data["controls"]:
        lines.append(
            f"| {r['recovery']} | {r['budget']} | {r['schedule']} | {r.get('variant') or '-'} | {r['seed']} "
            f"| {r['accuracy']:.3f} | {r['non_embedding_params_kept']:.3f} | {r['recovery_steps']} "
            f"| {r.get('rollbacks', 0)} | {r.get('stopped_reason') or '-'} |"
        )
    lines += [
        "",
        "## Setup",
        "",
        f"Recipe `{RECIPE}` with overrides. Budgets (4-iteration totals): "
        + "; ".join(
            f"{b}: {v['max_steps'] * ITERATIONS} steps x {TRAIN['per_device_train_batch_size']} sequences "
            f"({v['chunk_size'] * ITERATIONS} records)"
            for b, v in BUDGETS.items()
        )
        + f". Training: {knobs.train('sft')}"
        + (
            f"; grpo: {knobs.train('grpo')}, the same steps, {knobs.grpo_prompts} prompts per step"
            if "grpo" in {r["recovery"] for r in data["runs"] + data["controls"]}
            else ""
        )
        + f". Evaluation: {EVAL}.",
        "naive = equal cuts, fresh AdamW + warm-up per iteration; better = front-loaded cuts, AdamW moments "
        "carried through the cuts, one global warm-up + cosine; carry = like better but a warm-up + cosine per "
        "iteration (the demo's setting; the other experiments use its options "
        "and vary what their title says; each schedule's overrides are in `SCHEDULES` in bench/reproduce.py). "
        + (
            "Every schedule removes one whole layer in "
            f"its {meta['layer_iteration']} iteration (one_shot: in its only one) and MLP neurons in every iteration."
            if meta["experiment"] == "gradual_vs_oneshot"
            else ""
        ),
        "",
        "## Commands",
        "",
        "```bash",
        *meta["commands"],
        "```",
        "",
        "Each run is, for example:",
        "",
        "```bash",
        *meta["example_commands"],
        "```",
        "",
        f"Packages: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}. CPU: {meta['cpu']}; "
        f"one torch thread per run, {'-'.join(map(str, _span(meta['jobs'])))} runs at a time, "
        "machine shared with other jobs "
        "(wall times are indicative only). Grid wall time: "
        + "; ".join(f"{g['wall_s']:.0f} s" for g in meta["grids"])
        + ".",
        "",
    ]
    notes = out_dir / f"{name}.notes.md"
    if notes.is_file():  # hand-written reading of the numbers, kept next to the generated table
        at = lines.index("Per run (accuracy, fraction of non-embedding parameters kept):")
        lines[at:at] = [notes.read_text().rstrip(), ""]
    atomic_write_text(out_dir / f"{name}.md", "\n".join(lines))


def _span(jobs) -> list[int]:
    """[n] or [min, max] of the runs-at-a-time the grids used (older results hold one int)."""
    jobs = jobs if isinstance(jobs, list) else [jobs]
    return sorted({min(jobs), max(jobs)})


def _args_of(parser: argparse.ArgumentParser, command: str) -> argparse.Namespace:
    """The arguments a recorded grid command ran with."""
    return parser.parse_args(shlex.split(command)[2:])


def _knobs(a: argparse.Namespace) -> Knobs:
    return Knobs(a.grpo_prompts, a.learning_rate, a.keep)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("name", choices=list(EXPERIMENTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--recoveries", nargs="+", default=["cpt"], choices=["cpt", "distill", "sft", "grpo"])
    p.add_argument("--budgets", nargs="+", default=["light"], choices=list(BUDGETS))
    p.add_argument("--schedules", nargs="+", help="default: the experiment's own list")
    p.add_argument("--no-control", action="store_true")
    p.add_argument(
        "--layer-iteration",
        choices=["first", "last"],
        default="last",
        help="which iteration removes the whole layer (use a separate --work per choice)",
    )
    p.add_argument(
        "--grpo-prompts",
        type=int,
        default=GRPO_PROMPTS,
        help=f"prompts per GRPO step ({NUM_GENERATIONS} completions each; default {GRPO_PROMPTS})",
    )
    p.add_argument(
        "--learning-rate",
        type=float,
        help=f"for every run and control of the grid (default {TRAIN['learning_rate']:g}, grpo "
        f"{GRPO_TRAIN['learning_rate']:g})",
    )
    p.add_argument("--keep", type=float, help="fraction of non-embedding parameters to keep (default 0.5)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--work", default="runs/bench")
    p.add_argument("--model-dir", help="use this reference snapshot instead of copying the shipped one")
    p.add_argument("--results", default=str(ROOT / "bench" / "results"))
    p.add_argument("--suffix", default="", help="appended to the results name (e.g. _distill)")
    p.add_argument("--write-only", action="store_true", help="only aggregate runs already finished")
    a = p.parse_args(argv)
    a.schedules = a.schedules or EXPERIMENTS[a.name]
    for s in a.schedules:
        if s not in SCHEDULES:
            p.error(f"unknown schedule {s}; choose from {', '.join(SCHEDULES)}")
    if a.grpo_prompts < 1:
        p.error(f"--grpo-prompts must be at least 1, got {a.grpo_prompts}")
    if a.learning_rate is not None and not a.learning_rate > 0:
        p.error(f"--learning-rate must be positive, got {a.learning_rate}")
    if a.keep is not None and not 0 < a.keep < 1:
        p.error(f"--keep must be between 0 and 1, got {a.keep}")
    knobs = _knobs(a)

    base = (ROOT / a.work).resolve()
    base.mkdir(parents=True, exist_ok=True)
    model = Path(a.model_dir).resolve() if a.model_dir else snapshot_reference(base)
    work = base / a.name / model.name.rsplit("-", 1)[-1]  # runs are keyed by the weights they start from
    work.mkdir(parents=True, exist_ok=True)
    jobs, examples = [], []
    for seed in a.seeds:  # seed-major, so a cut-short grid still has whole seeds
        if not a.no_control:
            for method in dict.fromkeys(control_method(r) for r in a.recoveries):
                for budget in a.budgets:
                    out = control_dir(work, knobs.for_control.label(method), budget, seed)
                    every, todo, result = control_commands(model, out, budget, seed, method, knobs.for_control)
                    jobs.append((todo, out / "log.txt", result))
                    if seed == a.seeds[0]:
                        examples += [shlex.join(c) for c in every]
        for rec in a.recoveries:
            for budget in a.budgets:
                for sched in a.schedules:
                    out = work / f"{knobs.label(rec)}-{budget}-{sched}-s{seed}"
                    cmd = loop_command(model, out, sched, rec, budget, seed, a.layer_iteration, knobs)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    jobs.append(([cmd], work / f"{out.name}.log", out / "summary.json"))
                    if seed == a.seeds[0]:
                        examples.append(shlex.join(cmd))
    start = time.time()
    grids_file = work / f"grids{a.suffix}.json"
    grids = json.loads(grids_file.read_text()) if grids_file.is_file() else []
    if a.write_only and not grids_file.is_file():  # e.g. a combined table over grids run under other suffixes
        grids = [g for f in sorted(work.glob("grids*.json")) for g in json.loads(f.read_text())]
        grids = [g for g in grids if _knobs(_args_of(p, g["command"])) == knobs]  # only grids this table collects
    if not a.write_only:
        with ThreadPoolExecutor(max_workers=a.jobs) as pool:
            list(pool.map(lambda j: _run(*j), jobs))
        command = shlex.join([".venv/bin/python", "bench/reproduce.py", *(argv or sys.argv[1:])])
        grids.append({"command": command, "wall_s": time.time() - start})
        grids_file.write_text(json.dumps(grids, indent=1))
    meta = {
        "model": str(model.relative_to(ROOT)) if model.is_relative_to(ROOT) else str(model),
        "model_sha8": model.name.rsplit("-", 1)[-1],
        "commands": [g["command"] for g in grids],
        "grids": grids,
        "example_commands": [e.replace(str(ROOT) + "/", "") for e in examples],
        "versions": _versions(),
        "cpu": _cpu(),
        # runs at a time, as the grids ran (a --write-only call runs nothing)
        "jobs": sorted({_args_of(p, g["command"]).jobs for g in grids}) or [a.jobs],
        "experiment": a.name,
        "layer_iteration": a.layer_iteration,
        "knobs": dataclasses.asdict(knobs),
    }
    data = collect(work, a.recoveries, a.budgets, a.schedules, a.seeds, knobs)
    write_results(a.name + a.suffix, data, meta, Path(a.results))
    print(f"wrote {a.results}/{a.name + a.suffix}.md and .json ({len(data['runs'])} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
