"""One prepared accelerator check: the paper's two pipelines on real shapes, phase by phase, against the planner.

On one GPU, in under 8 minutes (a time guard skips what no longer fits, with a note), with randomly
initialised bf16 models of real shapes built from configs in code (speed does not depend on weight values;
nothing downloads):

- GRPO: the paper GRPO recipe's settings (recipes/paper-qwen2.5-7b-grpo.yaml) on the Qwen2.5-1.5B shape,
  two iterations of score -> cut -> recover (TRL GRPO, rollouts by colocated vLLM where vLLM imports, else
  HF generate) -> evaluate -> save, with few prompts and short completions; plus rollout tokens/s of HF
  generate and of vLLM on the same prompts (vLLM in its own process, so a failed engine leaves this one
  usable).
- CPT: the paper CPT recipe's settings (recipes/paper-llama3-8b-cpt.yaml) on the Llama-3-8B shape, two
  iterations under FSDP2 on one rank (a one-rank process group this script starts), then one recovery under
  ZeRO-2 where deepspeed imports, and one unsharded (the setting the planner's MFU was measured in).

Each phase records its seconds and peak memory, and its rate where it has one (recovery tokens/s and MFU
under the planner's own FLOP count, rollout and evaluation tokens/s, checkpoint GB/s, the gather after a
sharded recovery), beside what `prunetune plan --gpus 1 --gpu h200` estimates for the same recipe and shape
(loop/plan_cost.py, loop/cost.py). Recipes are the shipped ones with overrides only for what a short check
must change (iterations, steps, completion length, the built-in arith data instead of files); each
pipeline's result lists them. Results: bench/results/gpu_check.{json,md}, rewritten atomically after every
phase, so a run cut short still leaves what it measured.

  python bench/gpu_check.py                 # on the GPU machine, from the repository root
  python bench/gpu_check.py --dry-run       # the same code end to end on CPU: tiny shapes, no vLLM (~30 s)

What the device machine lacks travels as wheels (README, "The accelerator check"); the probe says what
imported, and a pipeline whose packages are missing is skipped with the reason.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

try:
    from bench.common import ROOT, cpu_name, peak_rss_mib, reset_peak_rss, versions, write_page
except ImportError:  # run as `python bench/gpu_check.py`
    from common import ROOT, cpu_name, peak_rss_mib, reset_peak_rss, versions, write_page

PACKAGES = ("torch", "transformers", "accelerate", "trl", "datasets", "peft", "safetensors", "tokenizers",
            "vllm", "deepspeed")
SHAPES = {  # published configs (Hugging Face config.json of Qwen/Qwen2.5-1.5B and meta-llama/Meta-Llama-3-8B)
    "qwen2.5-1.5b": {"model_type": "qwen2", "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                     "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
                     "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-06,
                     "tie_word_embeddings": True, "hidden_act": "silu", "use_sliding_window": False},
    "llama-3-8b": json.loads((ROOT / "src/prunetune/recipes/configs/llama-3-8b.json").read_text()),
}
TINY = {  # --dry-run: the same families and tying, tiny
    "qwen2.5-1.5b": {**SHAPES["qwen2.5-1.5b"], "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1024,
                     "max_position_embeddings": 2048},
    "llama-3-8b": {**SHAPES["llama-3-8b"], "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
                   "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 1024,
                   "max_position_embeddings": 2048},
}
# What a short check changes in the shipped recipes: two iterations, a few steps, the built-in arith data
# and task instead of files that are not on the machine, a small evaluation. Everything else (learning
# rates, batch sizes, generations, beta, bf16, gradient checkpointing, scorers) is the paper recipe's.
COMMON = ["iterations=2", "prune.calibration=arith", "prune.general=arith", "evaluation.tasks=[arith]",
          "evaluation.task_options={}", "gate.max_drop=null"]
GRPO = ["recovery.reward_task=arith", "recovery.reward_task_options=null", "recovery.config.max_steps=2",
        "recovery.config.max_completion_length=64", "evaluation.limit=64", "evaluation.max_new_tokens=64",
        # one GPU: FSDP refuses Qwen2.5-1.5B's tied embeddings, and cpu_offload needs a sharding
        "recovery.config.sharding=none", "recovery.config.cpu_offload=false",
        "schedule.tensor_parallel=1"]  # the 7B recipe's 4 does not divide the 1.5B's 2 KV heads
CPT = ["recovery.data=arith", "recovery.config.max_steps=3", "recovery.config.sharding=fsdp",
       "evaluation.limit=32", "evaluation.max_new_tokens=64"]
DRY = {  # --dry-run on top: CPU-sized
    "all": ["schedule.mlp_neurons_per_iteration=64", "schedule.tensor_parallel=1", "recovery.config.bf16=false",
            "dtype=float32", "prune.calibration_samples=4", "prune.max_length=32", "evaluation.limit=4",
            "evaluation.max_new_tokens=8", "evaluation.batch_size=4", "evaluation.backend=hf"],
    "grpo": ["recovery.config.max_completion_length=8", "recovery.config.gradient_accumulation_steps=1",
             "recovery.config.per_device_train_batch_size=4", "recovery.config.num_generations=4",
             "recovery.config.use_vllm=false"],
    "cpt": ["recovery.config.max_length=32", "recovery.config.per_device_train_batch_size=2",
            "recovery.config.gradient_accumulation_steps=1"],
}
NEEDS = {  # seconds a phase needs on the GPU (rough, with margin); it is skipped when less is left
    "build": 30, "checkpoint_save": 45, "rollout_hf": 30, "rollout_vllm": 150, "evaluation": 45, "scoring": 20,
    "surgery": 10, "recovery": 120, "recovery_zero2": 120, "recovery_none": 90,
}
RESERVE_S = 15.0  # kept for writing the results


class PhaseTimeout(Exception):
    pass


class Check:
    """The run: probe facts, the time guard, the phases measured so far, and the atomic results writer."""

    def __init__(self, args):
        self.args, self.dry = args, args.dry_run
        self.t0 = time.perf_counter()
        self.budget = args.budget_s
        self.res: dict = {"mode": "cpu dry-run" if self.dry else "gpu", "budget_s": self.budget,
                          "command": "python bench/gpu_check.py " + " ".join(args.argv), "pipelines": {}, "notes": []}
        self.device = "cpu"

    def has(self, name: str) -> bool:
        """The probe found `name` importable."""
        return bool(self.res.get("probe", {}).get("packages", {}).get(name, {}).get("importable"))

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def note(self, text: str) -> None:
        print("note:", text, flush=True)
        self.res["notes"].append(text)

    # ---- one phase ---------------------------------------------------------------------------
    def phase(self, pipeline: str, name: str, iteration: int | None, fn, *, need: str | None = None):
        """Run fn() -> dict of measurements as one timed phase; (ok, the dict). Skipped when the guard says
        it will not fit; cut off by an alarm at the budget; an exception is recorded, not raised."""
        import torch

        rec: dict = {"phase": name, "iteration": iteration}
        phases = self.res["pipelines"].setdefault(pipeline, {}).setdefault("phases", [])
        phases.append(rec)
        want = NEEDS.get(need or name, 30) * (0.02 if self.dry else 1.0)
        left = self.left() - RESERVE_S
        if left < want:
            rec["status"] = f"skipped: {max(left, 0):.0f} s left of the budget, this phase needs ~{want:.0f} s"
            print(f"[{pipeline}] {name} {iteration}: {rec['status']}", flush=True)
            self.save()
            return False, rec
        self._reset_peak(torch)
        signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, max(left, 1.0))
        t = time.perf_counter()
        try:
            rec.update(fn() or {})
            self._sync(torch)
            rec["status"] = "ok"
        except PhaseTimeout:
            rec["status"] = f"cut off: the budget ran out after {time.perf_counter() - t:.0f} s"
        except Exception as e:  # noqa: BLE001  (a check reports every failure and goes on)
            rec["status"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            rec["traceback"] = traceback.format_exc()[-2000:]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        rec["seconds"] = round(time.perf_counter() - t, 3)
        rec.update(self._peak(torch))
        print(f"[{pipeline}] {name} {iteration}: {rec['status']} in {rec['seconds']:.1f} s "
              + json.dumps({k: v for k, v in rec.items() if k not in ("phase", "iteration", "status", "seconds",
                                                                      "traceback", "planned")}), flush=True)
        self.save()
        return rec["status"] == "ok", rec

    def _reset_peak(self, torch) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            try:
                reset_peak_rss()
            except OSError:  # not Linux, or /proc not writable
                pass

    def _sync(self, torch) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def _peak(self, torch) -> dict:
        if self.device == "cuda":
            free, total = torch.cuda.mem_get_info()
            return {"peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                    "device_used_gib_at_end": round((total - free) / 2**30, 2)}
        try:
            return {"peak_rss_mib": round(peak_rss_mib(), 1)}
        except (OSError, KeyError):
            return {}

    def save(self) -> None:
        self.res["elapsed_s"] = round(time.perf_counter() - self.t0, 1)
        write_page(self.args.out, self.res, page(self.res), quiet=True)


def _alarm(signum, frame):
    raise PhaseTimeout


# ---- the probe ----------------------------------------------------------------------------------
def probe(check: Check) -> dict:
    """What this machine has: packages that import (vLLM and deepspeed tried in a fresh process, as a broken
    install fails only on import), the GPU, and its bf16 matrix rate measured here."""
    import importlib.util

    import torch

    found = {}
    for name in PACKAGES:
        spec = importlib.util.find_spec(name) is not None
        ok, why = spec, None if spec else "not installed"
        if spec and name in ("vllm", "deepspeed") and not check.dry:
            try:
                done = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True,
                                      timeout=180)
                ok = done.returncode == 0
                why = None if ok else (done.stderr.strip().splitlines() or ["?"])[-1][:300]
            except subprocess.TimeoutExpired:
                ok, why = False, "import took over 180 s"
        found[name] = {"version": versions(name)[name] if spec else None, "importable": ok, **({"why": why} if why else {})}
    cuda = torch.cuda.is_available()
    out = {"python": sys.version.split()[0], "packages": found, "cuda": cuda, "cpu": cpu_name(),
           "cpu_count": os.cpu_count()}
    if cuda:
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported(),
                   torch_cuda=torch.version.cuda)
    n = 8192 if cuda else 256
    dtype = torch.bfloat16 if cuda else torch.float32
    a = torch.randn(n, n, device="cuda" if cuda else "cpu", dtype=dtype)
    b = torch.randn_like(a)
    for _ in range(3):
        a @ b
    reps = 10
    if cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    if cuda:
        torch.cuda.synchronize()
    out["matmul_tflops"] = round(2 * n**3 * reps / (time.perf_counter() - t) / 1e12, 4)
    out["matmul"] = f"{n}x{n}x{n} {'bf16' if cuda else 'fp32'} random, mean of {reps} after 3 warm-ups"
    del a, b
    return out


def planner_gpu(probe_out: dict) -> str:
    name = (probe_out.get("gpu") or "").upper()
    return next((k for k in ("h200", "h100", "a100") if k.upper() in name), "h200")


# ---- models, recipes, the planner ----------------------------------------------------------------
def shape_config(name: str, dry: bool) -> dict:
    return dict((TINY if dry else SHAPES)[name])


def build(config: dict, device: str, dtype):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    data = dict(config)
    cfg = AutoConfig.for_model(data.pop("model_type"), **data)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    return model.eval()


def load(recipe_name: str, overrides: list[str], config_path: Path):
    from prunetune.loop import load_recipe, validate_recipe

    recipe = load_recipe(recipe_name, [*overrides, f"model_config={config_path}"])
    dense, steps, shapes = validate_recipe(recipe)
    return recipe, steps, shapes


def planned(recipe, shapes, gpu_key: str) -> dict:
    """What `prunetune plan RECIPE --gpus 1 --gpu GPU` estimates for this recipe: per iteration and its text."""
    from prunetune.loop.cost import GPUS, TRAIN_MFU, Assumptions
    from prunetune.loop.plan_cost import describe, iteration_costs
    from prunetune.recovery import resolve_config

    gpu, a = GPUS[gpu_key], Assumptions()
    cfg = resolve_config(recipe.recovery.method, recipe.recovery.config, "recovery.config")
    costs = iteration_costs(recipe, shapes, 1, gpu, a)
    text, warnings = describe(recipe, cfg, costs, 1, gpu, a)
    its = {}
    for c in costs:
        its[c.name] = {"train_tokens": c.train_tokens, "train_s": c.train_gpu_h * 3600,
                       "rollout_tokens": c.rollout_tokens, "rollout_s": c.rollout_gpu_h * 3600,
                       "eval_tokens": c.eval_tokens, "eval_s": c.eval_gpu_h * 3600,
                       "memory_gb": c.memory.total / 1e9 if c.memory else None}
    return {"gpu": gpu_key, "mfu": TRAIN_MFU, "iterations": its, "text": text, "warnings": warnings}


def planned_train_tps(shape, seq_len: int, recompute: bool, gpu_key: str) -> float:
    from prunetune.loop.cost import GPUS, TRAIN_MFU, train_flops_per_token

    return GPUS[gpu_key].peak_flops * TRAIN_MFU / train_flops_per_token(shape, seq_len, recompute=recompute)


def planned_decode_tps(shape, context: float, gpu_key: str) -> float:
    from prunetune.loop.cost import GPUS, decode_seconds_per_token

    return 1.0 / decode_seconds_per_token(shape, GPUS[gpu_key], context, 2, 1.0)


def mfu(shape, tokens_per_s: float, seq_len: int, recompute: bool, peak_flops: float) -> float:
    """Model-FLOPs utilisation under the planner's FLOP count (3 forwards, 4 with recomputation)."""
    from prunetune.loop.cost import train_flops_per_token

    return tokens_per_s * train_flops_per_token(shape, seq_len, recompute=recompute) / peak_flops


def steady_rate(metrics: list[dict]) -> float | None:
    """Tokens/s over the logged steps after the first (allocation, warm-up); all of them when only one."""
    if not metrics:
        return None
    if len(metrics) == 1:
        m = metrics[0]
        return m["tokens"] / m["wall_time"] if m["wall_time"] else None
    a, b = metrics[0], metrics[-1]
    return (b["tokens"] - a["tokens"]) / (b["wall_time"] - a["wall_time"]) if b["wall_time"] > a["wall_time"] else None


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# ---- the pipelines ---------------------------------------------------------------------------------
class Pipeline:
    """Two loop iterations of one recipe, each phase through the library function the loop calls for it."""

    def __init__(self, check: Check, key: str, recipe_name: str, shape_name: str, overrides: list[str]):
        self.check, self.key, self.shape_name = check, key, shape_name
        self.work = Path(check.args.work) / key
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        cfg_path = self.work / f"{shape_name}.json"
        cfg_path.write_text(json.dumps(shape_config(shape_name, check.dry)))
        self.config = shape_config(shape_name, check.dry)
        self.recipe, self.steps, self.shapes = load(recipe_name, overrides, cfg_path)
        self.gpu_key = planner_gpu(check.res["probe"])
        self.plan = planned(self.recipe, self.shapes, self.gpu_key)
        self.entry = check.res["pipelines"].setdefault(key, {})
        self.entry.update(recipe=recipe_name, shape=shape_name, overrides=overrides, planner=self.plan,
                          planned_shapes=[{"intermediate_size": s.intermediate_size,
                                           "non_embedding_params": s.non_embedding_params()} for s in self.shapes])
        self.model = self.tok = None
        self.opt = None
        self.last_saved: Path | None = None

    def phase(self, name, iteration, fn, **kw):
        return self.check.phase(self.key, name, iteration, fn, **kw)

    def run_build(self) -> bool:
        import torch

        from prunetune.builtin.tokenizer import tiny_tokenizer

        dtype = torch.float32 if self.check.dry else torch.bfloat16

        def go():
            self.model = build(self.config, self.check.device, dtype)
            self.tok = tiny_tokenizer()  # speed does not depend on the vocabulary's content
            n = sum(p.numel() for p in self.model.parameters())
            return {"params": n, "dtype": str(dtype).replace("torch.", "")}

        return self.phase("build", 0, go)[0]

    def shape(self):
        from prunetune.models.shape import ModelShape

        return ModelShape.from_config(self.model.config)

    def save(self, iteration: int, *, keep: bool = False) -> bool:
        from prunetune.checkpoint import save_checkpoint

        path = self.work / f"iteration_{iteration:02d}"

        def go():
            save_checkpoint(self.model, self.tok, path, replace=True)
            size = dir_bytes(path)
            return {"bytes": size}

        ok, rec = self.phase("checkpoint_save", iteration, go)
        if ok:
            rec["gb_per_s"] = round(rec["bytes"] / 1e9 / rec["seconds"], 3)
            if self.last_saved is not None and not keep:
                shutil.rmtree(self.last_saved, ignore_errors=True)  # the disk holds two 8B checkpoints, not more
            self.last_saved = path
            self.model.config.name_or_path = self.model.name_or_path = str(path)
        return ok

    def evaluate(self, iteration: int) -> bool:
        from prunetune.tasks import get_task
        from prunetune.tasks.evaluate import evaluate

        e = self.recipe.evaluation
        backend = e.backend if e.backend == "hf" or self.check.has("vllm") else "hf"

        def go():
            out = {}
            model_dir = None
            if backend == "vllm":
                from prunetune.checkpoint import save_checkpoint

                model_dir = self.work / "served"
                save_checkpoint(self.model, self.tok, model_dir, replace=True)
            for name in e.tasks:
                r = evaluate(self.model, self.tok, get_task(name, **e.task_options.get(name, {})), limit=e.limit,
                             max_new_tokens=e.max_new_tokens, batch_size=e.batch_size, seed=self.recipe.seed,
                             progress=False, backend=backend, model_dir=model_dir)
                m = r["metrics"]
                out = {"task": name, "n": r["n"], "backend": backend, "accuracy": m.get("accuracy"),
                       "mean_length": m.get("mean_length"),
                       "generated_tokens": round(r["n"] * (m.get("mean_length") or 0))}
            return out

        ok, rec = self.phase("evaluation", iteration, go)
        if ok:
            rec["tokens_per_s"] = round(rec["generated_tokens"] / rec["seconds"], 1)
            p = self.plan["iterations"]["dense" if iteration == 0 else str(iteration)]
            rec["planned"] = {"seconds": p["eval_s"], "tokens": p["eval_tokens"],
                              "note": "every completion to max_new_tokens at the planner's decode rate"}
            if backend != e.backend:
                rec["note"] = f"the recipe says backend {e.backend}; vLLM does not import here"
        return ok

    def prune(self, iteration: int, step) -> bool:
        from prunetune.pruning.importance import calibration_inputs, score_mlp
        from prunetune.pruning.prune import StepSpec, prune_step

        p, seed = self.recipe.prune, self.recipe.seed
        held = {}

        def score():
            batches, general = calibration_inputs(self.tok, p.calibration, p.general, field=p.text_field,
                                                  limit=p.calibration_samples, max_length=p.max_length,
                                                  seed=seed * 1000 + iteration)
            held.update(batches=batches, general=general)
            held["scores"] = score_mlp(self.model, p.mlp_importance, batches, general_batches=general, seed=seed,
                                       progress=False, options=p.mlp_options, layerwise=p.layerwise)
            return {"scorer": p.mlp_importance, "samples": len(batches), "max_length": p.max_length}

        if not self.phase("scoring", iteration, score)[0]:
            return False

        def cut():
            before = self.shape().intermediate_size
            spec = StepSpec(mlp_neurons=step.mlp_neurons, kv_groups=step.kv_groups, layers=step.layers,
                            mlp_importance=p.mlp_importance, mlp_options=p.mlp_options, layerwise=p.layerwise)
            _, self.opt = prune_step(self.model, spec, held["batches"], general=held["general"], seed=seed,
                                     progress=False, optimizer_state=self.opt, mlp_scores=held["scores"])
            return {"intermediate_size": [before, self.shape().intermediate_size]}

        return self.phase("surgery", iteration, cut)[0]

    def recover(self, iteration: int, *, sharding: str | None = None, name: str = "recovery",
                planned_key: str | None = None) -> bool:
        """One recovery with the recipe's config (`sharding` overriding its sharding)."""
        from prunetune.data import take
        from prunetune.recovery import recover, resolve_config

        r = self.recipe.recovery
        cfg = resolve_config(r.method, r.config)
        if sharding is not None:
            cfg.sharding = sharding
        carry = r.carry_optimizer and cfg.sharding not in ("zero2", "zero3")
        per_step = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
        reward = None
        if r.method == "grpo":
            from prunetune.tasks import get_task, grpo_records, reward_function

            task = get_task(r.reward_task or "arith", **(r.reward_task_options or {}))
            examples = task.examples(split="train", limit=max(1, cfg.max_steps * per_step // cfg.num_generations),
                                     seed=self.recipe.seed * 1000 + iteration)
            records = grpo_records(task, examples, self.tok)
            reward = [reward_function(task, r.correctness_weight, r.format_weight, examples)]
        else:  # enough ~60-token arith records to fill max_steps x per_step packed blocks, twice over
            records = take(r.data, 0, 2 * cfg.max_steps * per_step * max(1, cfg.max_length // 40), seed=iteration)
        shape = self.shape()
        self.free_cache()
        if cfg.sharding != "none":
            start_group()

        def go():
            res = recover(self.model, self.tok, r.method, records, cfg, reward_funcs=reward,
                          work_dir=self.work / f"recover_{iteration:02d}_{cfg.sharding}",
                          optimizer_state=self.opt if carry else None, progress=False)
            self.model = res.model
            self.opt = res.optimizer_state if carry else None
            rate = steady_rate(res.metrics)
            out = {"sharding": cfg.sharding, "steps": res.steps, "tokens": res.tokens_seen,
                   "tokens_per_s": round(rate, 1) if rate else None, "gather_s": res.info.get("gather_s"),
                   "use_vllm": bool(getattr(cfg, "use_vllm", False)),
                   "gradient_checkpointing": cfg.gradient_checkpointing}
            if r.method == "grpo":
                last = res.metrics[-1] if res.metrics else {}
                out.update({k: last.get(k) for k in ("reward", "frac_reward_zero_std")})
            return out

        ok, rec = self.phase(name, iteration, go, need=name)
        if not ok:
            return False
        p = self.plan["iterations"][planned_key or str(iteration)]
        rec["planned"] = {"seconds": p["train_s"] + p["rollout_s"], "train_tokens": p["train_tokens"],
                          "memory_gb": p["memory_gb"]}
        if r.method != "grpo" and rec.get("tokens_per_s"):
            seq = cfg.max_length
            rec["mfu_of_datasheet_peak"] = round(mfu(shape, rec["tokens_per_s"], seq, cfg.gradient_checkpointing,
                                                     _peak_flops(self.gpu_key)), 4)
            if self.check.res["probe"]["matmul_tflops"]:
                rec["mfu_of_measured_matmul"] = round(mfu(shape, rec["tokens_per_s"], seq, cfg.gradient_checkpointing,
                                                          self.check.res["probe"]["matmul_tflops"] * 1e12), 4)
            rec["planned"]["tokens_per_s"] = planned_train_tps(shape, seq, cfg.gradient_checkpointing, self.gpu_key)
            rec["planned"]["mfu"] = self.plan["mfu"]
            if sharding is not None and sharding != r.config.get("sharding"):
                rec["planned"]["note"] = f"planned for the recipe's sharding ({r.config.get('sharding')}), run {sharding}"
        return True

    def rollouts(self) -> None:
        """Rollout tokens/s on the dense model: HF generate as TRL runs it (one generation batch of
        per_device x accumulation completions, sampled), and vLLM on the same prompts in its own process."""
        import torch

        r = self.recipe.recovery
        from prunetune.loop.cost import PROMPT_TOKENS
        from prunetune.recovery import resolve_config

        cfg = resolve_config(r.method, r.config)
        batch = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
        prompts, length = batch // cfg.num_generations, cfg.max_completion_length
        prompt_len = min(PROMPT_TOKENS, 32) if self.check.dry else PROMPT_TOKENS  # the planner's prompt length
        planned_tps = planned_decode_tps(self.shape(), prompt_len + length / 2, self.gpu_key)
        vocab = min(self.config["vocab_size"], 1000)

        def hf():
            g = torch.Generator().manual_seed(0)
            ids = torch.randint(10, vocab, (prompts, prompt_len), generator=g).repeat_interleave(cfg.num_generations, 0)
            ids = ids.to(self.check.device)
            kw = dict(do_sample=True, temperature=cfg.temperature, pad_token_id=0, attention_mask=torch.ones_like(ids))
            with torch.no_grad():
                self.model.generate(ids, max_new_tokens=2, min_new_tokens=2, **kw)  # warm-up
                t = time.perf_counter()
                out = self.model.generate(ids, max_new_tokens=length, min_new_tokens=length, **kw)
                if self.check.device == "cuda":
                    torch.cuda.synchronize()
                s = time.perf_counter() - t
            tokens = (out.shape[1] - prompt_len) * out.shape[0]
            return {"sequences": out.shape[0], "prompt_tokens": prompt_len, "new_tokens": length,
                    "tokens_per_s": round(tokens / s, 1), "timed_s": round(s, 3)}

        ok, rec = self.phase("rollout_hf", 0, hf)
        if ok:
            rec["planned"] = {"tokens_per_s": round(planned_tps, 1),
                              "note": "the planner's decode rate (batch 16, gen_speedup 1)"}
        if self.check.dry or not self.check.has("vllm"):
            self.phase_note("rollout_vllm", "skipped: " + ("--dry-run runs without vLLM" if self.check.dry else
                                                            "vLLM does not import here"))
            return

        def vllm():
            args = ["--worker", "vllm-rollout", str(self.last_saved), str(prompts), str(cfg.num_generations),
                    str(prompt_len), str(length), str(cfg.vllm_gpu_memory_utilization), str(vocab)]
            budget = max(10, int(self.check.left() - RESERVE_S - 5))
            done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=budget)
            if done.returncode:
                raise RuntimeError((done.stderr.strip().splitlines() or ["?"])[-1])
            return json.loads(done.stdout.strip().splitlines()[-1])

        ok, rec = self.phase("rollout_vllm", 0, vllm)
        if ok:
            rec["planned"] = {"tokens_per_s": round(planned_tps, 1),
                              "note": "the planner's decode rate (batch 16, gen_speedup 1)"}

    def fits(self, sharding: str):
        """True when the planner's memory for this model under `sharding` on one GPU fits it; else why not."""
        from prunetune.loop.cost import GPUS, memory_per_gpu
        from prunetune.loop.plan_cost import training_of
        from prunetune.recovery import resolve_config

        gpu = GPUS[self.gpu_key]
        cfg = resolve_config(self.recipe.recovery.method, {**self.recipe.recovery.config, "sharding": sharding})
        need = memory_per_gpu(self.shape(), training_of(self.recipe, cfg, 1, gpu)).total
        free = self.check.res["probe"].get("gpu_memory_gib", gpu.memory / 2**30) * 2**30
        return True if need < 0.95 * free else f"{need / 1e9:.0f} GB, over the {free / 1e9:.0f} GB here"

    def phase_note(self, name: str, status: str) -> None:
        self.entry.setdefault("phases", []).append({"phase": name, "iteration": 0, "status": status})
        print(f"[{self.key}] {name}: {status}", flush=True)

    def free_cache(self) -> None:
        import torch

        gc.collect()
        if self.check.device == "cuda":
            torch.cuda.empty_cache()

    def free(self) -> None:
        import torch

        self.model = self.opt = None
        gc.collect()
        if self.check.device == "cuda":
            torch.cuda.empty_cache()


def _peak_flops(gpu_key: str) -> float:
    from prunetune.loop.cost import GPUS

    return GPUS[gpu_key].peak_flops


def run_grpo(check: Check) -> None:
    overrides = [*COMMON, *GRPO, f"recovery.config.use_vllm={'true' if check.has('vllm') else 'false'}"]
    if check.dry:
        overrides += [*DRY["all"], *DRY["grpo"]]
    elif not check.has("vllm"):
        check.note("grpo: vLLM does not import, so rollouts are HF generate (recovery.config.use_vllm=false)")
    if not (check.has("trl") and check.has("datasets")):
        check.res["pipelines"]["grpo"] = {"skipped": "trl and datasets must import for GRPO recovery "
                                                     "(README: carry them as wheels)"}
        check.note(check.res["pipelines"]["grpo"]["skipped"])
        return
    p = Pipeline(check, "grpo", "paper-qwen2.5-7b-grpo", "qwen2.5-1.5b", overrides)
    if not p.run_build():
        return
    p.save(0, keep=True)  # colocated vLLM and the rollout benchmark start from a checkpoint on disk
    p.rollouts()
    p.evaluate(0)
    for i, step in enumerate(p.steps, 1):
        if not (p.prune(i, step) and p.recover(i)):
            break
        p.evaluate(i)
        p.save(i)
    p.free()


def run_cpt(check: Check) -> None:
    overrides = [*COMMON, *CPT]
    if check.dry:
        overrides += [*DRY["all"], *DRY["cpt"]]
    p = Pipeline(check, "cpt", "paper-llama3-8b-cpt", "llama-3-8b", overrides)
    if not p.run_build():
        return
    p.evaluate(0)
    done = 0
    for i, step in enumerate(p.steps, 1):
        if not (p.prune(i, step) and p.recover(i)):
            break
        done = i
        p.evaluate(i)
        p.save(i)
    last = str(done or 1)
    p.recover(done, sharding="none", name="recovery_none", planned_key=last)
    fits = p.fits("zero2")
    if not check.has("deepspeed"):
        p.phase_note("recovery_zero2", "skipped: deepspeed does not import here")
    elif fits is not True:
        p.phase_note("recovery_zero2", f"skipped: the planner puts ZeRO-2 on one rank at {fits} (fp32 master "
                                       "weights and moments: 12 bytes per parameter unsharded)")
    else:
        p.recover(done, sharding="zero2", name="recovery_zero2", planned_key=last)
    p.free()


def start_group() -> None:
    """A one-rank process group, so that FSDP2 and ZeRO run their code paths on one device."""
    import torch
    import torch.distributed as tdist

    if tdist.is_initialized():
        return
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    for k, v in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_WORLD_SIZE", "1")):
        os.environ.setdefault(k, v)
    if torch.cuda.is_available():
        torch.cuda.set_device(0)
    tdist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


# ---- the vLLM worker -------------------------------------------------------------------------------
def vllm_rollout(model_dir: str, prompts: int, n: int, prompt_len: int, length: int, util: float, vocab: int) -> dict:
    """Sampled rollouts with vLLM as TRL's colocated engine makes them: n completions of each prompt."""
    import random

    from vllm import LLM, SamplingParams

    t = time.perf_counter()
    llm = LLM(model=model_dir, dtype="bfloat16", gpu_memory_utilization=util, max_model_len=prompt_len + length + 16,
              seed=0, enforce_eager=True)
    start = time.perf_counter() - t
    rnd = random.Random(0)
    batch = [{"prompt_token_ids": [rnd.randrange(10, vocab) for _ in range(prompt_len)]} for _ in range(prompts)]
    sp = SamplingParams(n=n, temperature=1.0, max_tokens=length, min_tokens=length, ignore_eos=True, detokenize=False)
    llm.generate(batch, SamplingParams(n=n, max_tokens=2, ignore_eos=True, detokenize=False), use_tqdm=False)
    t = time.perf_counter()
    out = llm.generate(batch, sp, use_tqdm=False)
    s = time.perf_counter() - t
    tokens = sum(len(o.token_ids) for r in out for o in r.outputs)
    return {"engine_start_s": round(start, 1), "sequences": prompts * n, "prompt_tokens": prompt_len,
            "new_tokens": length, "tokens_per_s": round(tokens / s, 1), "timed_s": round(s, 3),
            "enforce_eager": True}


# ---- the page --------------------------------------------------------------------------------------
def _fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def comparison(res: dict) -> list[list[str]]:
    """Measured against planned, one row per phase that has a planned figure."""
    rows = []
    for key, pipe in res["pipelines"].items():
        for ph in pipe.get("phases", []):
            pl = ph.get("planned")
            if not pl or ph.get("status") != "ok":
                continue
            for what, m, p in (("tokens/s", ph.get("tokens_per_s"), pl.get("tokens_per_s")),
                               ("seconds", ph.get("seconds"), pl.get("seconds")),
                               ("MFU", ph.get("mfu_of_datasheet_peak"), pl.get("mfu")),
                               ("peak GB", (ph.get("peak_allocated_gib") or 0) * 2**30 / 1e9 or None, pl.get("memory_gb"))):
                if m is None or p is None or (what == "seconds" and ph["phase"].startswith("rollout")):
                    continue
                rows.append([key, ph["phase"], _fmt(ph["iteration"]), what, _fmt(m), _fmt(p),
                             f"{m / p:.3g}" if p else "", pl.get("note", "")])
    return rows


def page(res: dict) -> str:
    from prunetune.table import format_table

    dry = res["mode"] != "gpu"
    pr = res.get("probe", {})
    title = ("# gpu_check: CPU DRY-RUN (tiny shapes, no vLLM): not GPU results; no number here says anything "
             "about a GPU" if dry else f"# gpu_check on {pr.get('gpu', '?')}")
    lines = [title, "", f"Command: `{res['command']}` ({res.get('elapsed_s', 0):.0f} s of a {res['budget_s']:.0f} s "
             "budget). " + ("Tiny random models on CPU, fp32: this only shows that every phase runs. " if dry else
             "Random bf16 weights of real shapes. ") + "What each recipe was changed in is listed per pipeline.", ""]
    if pr:
        pk = pr.get("packages", {})
        lines += ["## The machine", "",
                  f"Python {pr.get('python')}, {pr.get('gpu') or 'no GPU'}"
                  + (f" ({pr.get('gpu_memory_gib')} GiB, CUDA {pr.get('torch_cuda')})" if pr.get("gpu") else "")
                  + f"; CPU {pr.get('cpu')} ({pr.get('cpu_count')} cores); matmul {pr.get('matmul_tflops')} TFLOP/s "
                  f"({pr.get('matmul')}).", "",
                  "```", format_table(["package", "version", "imports"],
                                      [[k, v["version"] or "-", "yes" if v["importable"] else f"no ({v.get('why', '')})"]
                                       for k, v in pk.items()], align="lll"), "```", ""]
    rows = comparison(res)
    if rows:
        lines += ["## Measured against `prunetune plan --gpus 1 --gpu h200`", "",
                  "```", format_table(["pipeline", "phase", "iter", "what", "measured", "planned", "measured/planned",
                                       "note"], rows, align="lllrrrrl"), "```", ""]
    for key, pipe in res["pipelines"].items():
        lines += [f"## {key}: {pipe.get('recipe', '')} on the {pipe.get('shape', '')} shape", ""]
        if "skipped" in pipe:
            lines += [f"Skipped: {pipe['skipped']}", ""]
            continue
        lines += [f"Overrides: `{' '.join(pipe.get('overrides', []))}`", ""]
        prow = []
        for ph in pipe.get("phases", []):
            extra = {k: v for k, v in ph.items() if k not in ("phase", "iteration", "status", "seconds", "planned",
                                                              "traceback", "path", "peak_allocated_gib",
                                                              "device_used_gib_at_end", "peak_rss_mib")}
            mem = ph.get("peak_allocated_gib", ph.get("peak_rss_mib"))
            prow.append([ph["phase"], _fmt(ph.get("iteration")), ph.get("status", ""), _fmt(ph.get("seconds")),
                         _fmt(mem), ", ".join(f"{k} {_fmt(v)}" for k, v in extra.items() if v is not None)])
        lines += ["```", format_table(["phase", "iter", "status", "s", "peak GiB" if not dry else "peak RSS MiB",
                                       "measured"], prow, align="llllrl"), "```", ""]
        if pipe.get("planner"):
            lines += ["The planner for this recipe and shape:", "", "```", pipe["planner"]["text"],
                      *pipe["planner"]["warnings"], "```", ""]
    if res["notes"]:
        lines += ["## Notes", "", *[f"- {n}" for n in res["notes"]], ""]
    lines += ["Planner constants (loop/cost.py) to update from a GPU run: TRAIN_MFU from cpt `recovery_none` "
              "(the setting it was measured in), the decode rate from `rollout_hf` / `rollout_vllm` "
              "(measured/planned is the --gen-speedup they imply), with a pointer to this file.", ""]
    return "\n".join(lines)


# ---- main ------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["--worker", "vllm-rollout"]:
        a = argv[2:]
        print(json.dumps(vllm_rollout(a[0], int(a[1]), int(a[2]), int(a[3]), int(a[4]), float(a[5]), int(a[6]))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, no vLLM: the same code end to end")
    ap.add_argument("--budget-s", type=float, default=None, help="overall time guard (default 460 on GPU, 300 dry)")
    ap.add_argument("--out", default=None, help="results path without suffix (default bench/results/gpu_check, "
                                                "or gpu_check_cpu_dryrun with --dry-run)")
    ap.add_argument("--work", default=None, help="scratch directory for checkpoints (default a temporary one)")
    ap.add_argument("--only", choices=["grpo", "cpt"], default=None, help="run one pipeline")
    args = ap.parse_args(argv)
    args.argv = argv
    args.budget_s = args.budget_s or (300.0 if args.dry_run else 460.0)
    args.out = args.out or str(ROOT / "bench/results" / ("gpu_check_cpu_dryrun" if args.dry_run else "gpu_check"))
    import tempfile

    scratch = None
    if args.work is None:
        scratch = tempfile.mkdtemp(prefix="gpu_check_")
        args.work = scratch
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    check = Check(args)
    try:
        import torch

        check.res["probe"] = probe(check)
        check.device = "cuda" if check.res["probe"]["cuda"] and not args.dry_run else "cpu"
        if not args.dry_run and check.device != "cuda":
            check.note("no GPU: nothing measured (use --dry-run to check the script on CPU)")
            check.save()
            return 1
        if check.device == "cpu":
            torch.set_num_threads(1)  # tiny models: more threads only contend (tests/conftest.py)
        for key, fn in (("grpo", run_grpo), ("cpt", run_cpt)):
            if args.only in (None, key):
                try:
                    fn(check)
                except Exception as e:  # noqa: BLE001  (a pipeline that cannot start is reported, the next runs)
                    check.res["pipelines"].setdefault(key, {})["failed"] = f"{type(e).__name__}: {e}"[:500]
                    check.note(f"{key}: could not run: {type(e).__name__}: {str(e)[:300]}")
                    traceback.print_exc()
        check.save()
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
