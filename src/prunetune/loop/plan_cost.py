"""A recipe's cost per iteration on N GPUs of a kind: its recovery read as tokens, FLOPs, rollouts,
evaluations and a per-rank training setup, priced by the cost model (loop/cost.py), and printed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from prunetune.loop.cost import (
    GPU,
    GPUS,
    GRPO_LOGIT_BYTES,
    PROMPT_TOKENS,
    Assumptions,
    Memory,
    Training,
    decode_seconds_per_token,
    memory_per_gpu,
    train_flops_per_token,
)
from prunetune.models.shape import ModelShape
from prunetune.table import format_table


@dataclass
class IterationCost:
    name: str
    train_tokens: float = 0.0
    train_gpu_h: float = 0.0
    rollout_tokens: float = 0.0
    rollout_gpu_h: float = 0.0
    eval_tokens: float = 0.0
    eval_gpu_h: float = 0.0
    memory: Memory | None = None
    """Bytes per GPU while this iteration's recovery trains (None: the dense evaluation, or no recovery)."""


def training_of(recipe, cfg, gpus: int, gpu: GPU) -> Training:
    """The recipe's recovery as one rank sees it (cfg: its resolved recovery config)."""
    method = recipe.recovery.method
    w = 2 if recipe.dtype == "bfloat16" else 4
    t = Training(
        ranks=gpus, sharding=cfg.sharding, cpu_offload=cfg.cpu_offload,
        gradient_checkpointing=cfg.gradient_checkpointing, weight_bytes=w, act_bytes=2 if (cfg.bf16 or w == 2) else 4,
        micro_batch=cfg.per_device_train_batch_size, lora_rank=cfg.lora.r if cfg.lora else None,
    )
    if method == "grpo":
        t.seq_len = PROMPT_TOKENS + cfg.max_completion_length  # memory must hold the longest completion
        t.logit_tokens, t.logit_bytes = cfg.max_completion_length, GRPO_LOGIT_BYTES
        t.frozen_copy, t.frozen_bytes = cfg.beta > 0, w
        if cfg.use_vllm and cfg.vllm_mode == "colocate":
            t.rollout_bytes = cfg.vllm_gpu_memory_utilization * gpu.memory
        elif not cfg.use_vllm:  # HF generate over the local generation batch: its KV cache
            t.rollout_kv_tokens = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * t.seq_len
    else:
        t.seq_len = cfg.max_length
    if method == "distill":
        t.frozen_copy, t.frozen_logits = True, True
        t.frozen_bytes = {"float32": 4, "bfloat16": 2, "float16": 2}.get(cfg.teacher_dtype or "", w)
    return t


def _steps(recipe, cfg, iterations: int) -> list[float | None]:
    """Optimizer steps each of `iterations` recoveries takes: what the allocation gives each when its
    steps are known up front, else equal shares of total_steps (measured damage decides as the run goes)."""
    from prunetune.loop.budget import planned_steps

    r = recipe.recovery
    if r.total_steps:
        planned = None if recipe.one_shot or recipe.schedule.shape == "damage" else planned_steps(r, iterations)
        return planned or [r.total_steps / (1 if recipe.one_shot else recipe.iterations)] * iterations
    if cfg.max_steps:
        return [cfg.max_steps * (recipe.iterations if recipe.one_shot else 1)] * iterations
    return [None] * iterations


def iteration_costs(recipe, shapes: list[ModelShape], gpus: int, gpu: GPU, a: Assumptions) -> list[IterationCost]:
    """Cost of the dense evaluation, then of every iteration (its recovery trains shapes[i])."""
    from prunetune.recovery import resolve_config

    r, e = recipe.recovery, recipe.evaluation
    w = 2 if recipe.dtype == "bfloat16" else 4
    mult = recipe.iterations if recipe.one_shot else 1
    gen_ctx = PROMPT_TOKENS + e.max_new_tokens * a.gen_fill / 2
    eval_tokens = len(e.tasks) * (e.limit or a.eval_examples) * e.max_new_tokens * a.gen_fill

    def eval_cost(c: IterationCost, shape: ModelShape, times: int) -> None:
        c.eval_tokens = times * eval_tokens  # every rank evaluates every example (the loop does): x gpus
        c.eval_gpu_h = gpus * c.eval_tokens * decode_seconds_per_token(shape, gpu, gen_ctx, w, a.gen_speedup) / 3600

    out = [IterationCost("dense")]
    eval_cost(out[0], shapes[0], 1)
    cfg = resolve_config(r.method, r.config, "recovery.config") if r.method != "none" else None
    t = training_of(recipe, cfg, gpus, gpu) if cfg else None
    per_step = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * gpus if cfg else 0
    per_iteration = _steps(recipe, cfg, len(shapes) - 1) if cfg else None
    for i, shape in enumerate(shapes[1:], 1):
        steps = per_iteration[i - 1] if per_iteration else None
        c = IterationCost(str(i))
        eval_cost(c, shape, 2 if e.after_prune else 1)
        out.append(c)
        if cfg is None:
            continue
        c.memory = memory_per_gpu(shape, t, shapes[0] if r.method == "distill" else shape)
        peak = gpu.peak_flops * a.mfu
        if r.method == "grpo":
            completion = cfg.max_completion_length * a.gen_fill
            seqs = (steps or math.ceil(r.chunk_size * mult * cfg.num_generations * cfg.num_iterations / per_step)) * per_step
            c.train_tokens = seqs * (PROMPT_TOKENS + completion)
            ctx = int(PROMPT_TOKENS + completion)
            extra = (cfg.beta > 0) + bool(cfg.use_vllm)  # reference and old-policy log-probs: one forward each
            flops = c.train_tokens * (train_flops_per_token(shape, ctx, recompute=t.gradient_checkpointing)
                                      + extra * shape.flops_per_token(context=ctx // 2))
            c.rollout_tokens = seqs / cfg.num_iterations * completion
            per_tok = decode_seconds_per_token(shape, gpu, PROMPT_TOKENS + completion / 2, w, a.gen_speedup)
            c.rollout_gpu_h = c.rollout_tokens * per_tok / 3600
        else:
            seq = cfg.max_length
            if steps:
                c.train_tokens = steps * per_step * seq
            elif cfg.max_tokens:
                c.train_tokens = cfg.max_tokens * mult
            else:
                c.train_tokens = r.chunk_size * mult * (a.tokens_per_record or seq)
            flops = c.train_tokens * train_flops_per_token(shape, seq, recompute=t.gradient_checkpointing)
            if r.method == "distill":
                flops += c.train_tokens * shapes[0].flops_per_token(context=seq // 2)
        c.train_gpu_h = flops / peak / 3600
    return out


def _gb(x: float) -> str:
    return f"{x / 1e9:.1f}"


def _count(x: float) -> str:
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.0f}"


def describe(recipe, cfg, costs: list[IterationCost], gpus: int, gpu: GPU, a: Assumptions) -> tuple[str, list[str]]:
    """The cost table with its totals and assumptions, and one warning line per kind of plan that will not fit."""
    name = next(k for k, v in GPUS.items() if v == gpu)
    setup = "no recovery"
    if cfg is not None:
        setup = ", ".join(
            x for x in (
                f"sharding {cfg.sharding}", "cpu_offload" if cfg.cpu_offload else "",
                "gradient_checkpointing" if cfg.gradient_checkpointing else "", "bf16" if cfg.bf16 else "",
                f"lora r={cfg.lora.r}" if cfg.lora else "", f"weights {recipe.dtype}",
                ("vLLM rollouts" + (" (server: its GPUs not counted)" if cfg.vllm_mode == "server" else ""))
                if getattr(cfg, "use_vllm", False) else "",
            ) if x
        )
    head = ["iter", "train tokens", "train GPU-h", "rollout GPU-h", "eval GPU-h", "params GB", "grads GB",
            "optim GB", "activ GB", "frozen GB", "rollout GB", "GPU GB", "fits", "CPU GB"]
    rows, over = [], []
    for c in costs:
        m = c.memory or Memory()
        fits = "" if c.memory is None else ("ok" if m.total <= gpu.memory else "NO!")
        if fits == "NO!":
            over.append(c.name)
        mem = [_gb(m.params), _gb(m.grads), _gb(m.optimizer), _gb(m.activations), _gb(m.frozen), _gb(m.rollout),
               _gb(m.total), fits, _gb(m.offloaded)] if c.memory else [""] * 9
        rows.append([c.name, _count(c.train_tokens) if c.train_tokens else "", f"{c.train_gpu_h:.1f}",
                     f"{c.rollout_gpu_h:.1f}", f"{c.eval_gpu_h:.1f}", *mem])
    train, roll, ev = (sum(getattr(c, k) for c in costs) for k in ("train_gpu_h", "rollout_gpu_h", "eval_gpu_h"))
    total = train + roll + ev
    peak = max((c.memory.total for c in costs if c.memory), default=0.0)
    lines = [
        f"cost on {gpus} x {gpu.name} ({gpu.peak_flops / 1e12:.0f} TFLOP/s bf16 dense, {gpu.memory / 1e9:.0f} GB each): {setup}",
        format_table(head, rows, align="l" + "r" * (len(head) - 1)),
        f"total: {total:,.1f} GPU-h = {total / gpus:,.1f} h on {gpus} GPUs (training {train:,.1f}, rollouts {roll:,.1f}, "
        f"evaluation {ev:,.1f})" + (f"; peak {_gb(peak)} GB of {gpu.memory / 1e9:.0f} GB per GPU" if peak else ""),
        f"assumed: training at {a.mfu:.1%} MFU (--mfu; measured for cpt on one H200: bench/results/speed_h200.md) with "
        "no communication cost; generation at the measured HF static-cache decode rate scaled by memory bandwidth "
        f"x{a.gen_speedup:g} (--gen-speedup; vLLM's larger batches are faster, not measured here); completions use "
        f"{a.gen_fill:.0%} of their token budget (--gen-fill); prompts {PROMPT_TOKENS} tokens; "
        + (f"{a.eval_examples} examples per task (--eval-examples; evaluation.limit is null); " if not recipe.evaluation.limit else "")
        + ("" if cfg is None or recipe.recovery.method == "grpo" or _fixed(recipe, cfg) else
           f"{a.tokens_per_record or cfg.max_length} tokens per record (--tokens-per-record); ")
        + "every rank evaluates every example; scoring, rollbacks and checkpoint writes not counted",
    ]
    warnings = []
    if over:
        warnings.append(
            f"warning: iteration{'s' if len(over) > 1 else ''} {', '.join(over)} need more than the {gpu.memory / 1e9:.0f} GB "
            f"of one {name} (peak {_gb(peak)} GB per GPU): shard (recovery.config.sharding), offload (cpu_offload), "
            "recompute activations (gradient_checkpointing), a smaller per_device_train_batch_size, or more GPUs"
        )
    return "\n".join(lines), warnings


def _fixed(recipe, cfg) -> bool:
    """The recovery's tokens follow from the recipe alone (no tokens-per-record assumption)."""
    return bool(recipe.recovery.total_steps or cfg.max_steps or cfg.max_tokens)
