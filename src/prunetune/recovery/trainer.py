"""What every tuner shares: its config's common keys, the TUNERS registry, TrainingArguments for CPU or
GPU, our optimizer and schedule, metrics and the NaN stop.

Each tuner (cpt.py, sft.py, ...) declares its config dataclass, builds its data and picks a Trainer
class; `fit()` does the rest, so cpt, sft and distill differ only in data and loss, and all of them run
unchanged under torchrun / accelerate launch. Config keys follow TrainingArguments' names.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from transformers import TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from prunetune.config import SEED_MAX, bounded
from prunetune.errors import UserError
from prunetune.recovery import lora as lora_lib
from prunetune.recovery import sharding, until
from prunetune.recovery.callbacks import (  # noqa: F401 (the tuners import them from here)
    BarOnlyProgress,
    Diverged,
    DivergenceCallback,
    FiniteLossMixin,
    MetricsCallback,
)
from prunetune.recovery.schedule import GlobalSchedule, export_optimizer_state, make_optimizer
from prunetune.registry import Registry

TUNERS = Registry("recovery method")
"""name -> train(model, tokenizer, records, cfg, ctx) -> RecoveryResult, registered with its config class."""


@dataclass
class LoraOptions:
    r: int = bounded(8, ge=1)
    """Adapter rank."""
    alpha: float = bounded(16.0, gt=0.0)
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    target_modules: str | list[str] = "all-linear"
    """Modules that get an adapter: all-linear, or a list of module names."""
    dropout: float = bounded(0.0, ge=0.0, lt=1.0)
    """Dropout on the adapter's input."""


@dataclass
class CommonConfig:
    """Keys every recovery method takes. Defaults follow the paper where it says (cosine, 5% warm-up,
    one pass over the chunk) and are otherwise sized for a CPU."""

    max_steps: int | None = bounded(None, ge=1, le=1_000_000_000)
    """Optimizer steps for this call; default one pass over the data (the paper: 1 epoch per chunk)."""
    max_tokens: int | None = bounded(None, ge=1)
    """Token budget instead of max_steps (converted to steps; training stops once reached)."""
    learning_rate: float = bounded(1e-5, gt=0.0)
    """Peak AdamW learning rate (2e-4 by default with lora)."""
    per_device_train_batch_size: int = bounded(4, ge=1, le=65536)
    """Sequences per device per micro-batch."""
    gradient_accumulation_steps: int = bounded(1, ge=1, le=65536)
    """Micro-batches per optimizer step."""
    lr_scheduler_type: Literal["cosine", "linear", "constant", "wsd"] = "cosine"
    """cosine | linear | constant | wsd (warm-up, stable, decay: Adapt-Pruner's schedule; with
    recovery.global_schedule one warm-up and one decay span the whole run)."""
    decay_ratio: float = bounded(0.1, gt=0.0, le=1.0)
    """wsd only: the share of the schedule's steps, at its end, over which the rate decays linearly to zero."""
    warmup_ratio: float = bounded(0.05, ge=0.0, lt=1.0)
    """Fraction of steps warming up linearly (a GlobalSchedule warms up only at its start)."""
    weight_decay: float = bounded(0.0, ge=0.0)
    """AdamW decoupled weight decay on matrices."""
    adam_beta1: float = bounded(0.9, ge=0.0, lt=1.0)
    """AdamW beta1."""
    adam_beta2: float = bounded(0.999, ge=0.0, lt=1.0)
    """AdamW beta2."""
    adam_epsilon: float = bounded(1e-8, gt=0.0)
    """AdamW epsilon."""
    max_grad_norm: float = bounded(1.0, ge=0.0)
    """Gradient clipping norm (0 disables)."""
    seed: int = bounded(0, ge=0, le=SEED_MAX)
    """Seed for initialisation of LoRA, data order and sampling."""
    logging_steps: int = bounded(1, ge=1)
    """Record metrics every N optimizer steps."""
    bf16: bool = False
    """bf16 mixed precision (GPU only; keep False on CPU)."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward to save memory."""
    lora: LoraOptions | None = None
    """{r, alpha, target_modules, dropout}: train a LoRA adapter and merge it before returning."""
    sharding: Literal["none", "fsdp", "hybrid_fsdp", "zero2", "zero3"] = "none"
    """How ranks split the model under torchrun / accelerate launch: none (DDP: every rank holds the
    whole model, its gradients and optimizer state), fsdp (FSDP2, fully sharded), hybrid_fsdp (FSDP2,
    sharded within a node, replicated across nodes), zero2 / zero3 (DeepSpeed ZeRO; needs deepspeed)."""
    cpu_offload: bool = False
    """Sharded only: keep parameters and optimizer state in CPU memory between uses."""
    deepspeed_config: str | None = None
    """zero2 / zero3 only: a DeepSpeed JSON config file to use instead of the generated one."""

    def __post_init__(self):
        if self.max_steps is not None and self.max_tokens is not None:
            raise UserError("give either max_steps or max_tokens, not both")
        if self.cpu_offload and self.sharding == "none":
            raise UserError("recovery.config.cpu_offload needs a sharding (fsdp, hybrid_fsdp, zero2 or zero3)")
        if self.deepspeed_config is not None and self.sharding not in ("zero2", "zero3"):
            raise UserError("recovery.config.deepspeed_config needs sharding: zero2 or zero3")
        if self.lora is not None and self.sharding in sharding.FSDP:
            raise UserError(f"recovery.config.lora is not supported with sharding: {self.sharding} (use none or zero2)")


@dataclass
class TextConfig(CommonConfig):
    """Packed blocks of raw text (cpt, distill's text format)."""

    max_length: int = bounded(512, ge=2, le=1_048_576)
    """Tokens per packed block."""
    text_field: str = "text"
    """Record field holding the raw text."""
    template: str | None = None
    """A str.format template filled from record fields, e.g. 'Question: {question}\\nAnswer: {answer}'."""

    def __post_init__(self):
        super().__post_init__()
        if self.template is not None:
            from prunetune.recovery.examples import template_fields

            template_fields(self.template)


@dataclass
class PairsConfig(CommonConfig):
    """Prompt/completion or chat records with the loss on the completion (sft)."""

    max_length: int = bounded(512, ge=2, le=1_048_576)
    """Longest prompt+completion in tokens (longer ones are truncated)."""
    prompt_field: str = "prompt"
    """Record field holding the prompt."""
    completion_field: str = "completion"
    """Record field holding the completion (the only tokens with loss)."""
    messages_field: str = "messages"
    """Record field holding a chat list; its last (assistant) message is the completion."""
    chat_template: bool | None = None
    """Wrap prompt/completion records in the tokenizer's chat template: None when it has one | false: as
    they are (prompts already formatted, e.g. recovery.teacher_data's) | true (an error without one)."""


@dataclass
class RecoveryResult:
    model: torch.nn.Module
    metrics: list[dict]
    tokens_seen: int
    steps: int
    optimizer_state: dict | None
    info: dict = field(default_factory=dict)  # e.g. skipped optimizer-state entries, world size


@dataclass
class Context:
    """Everything `recover()` passes through to a tuner besides model, tokenizer, records and config."""

    work_dir: Path
    metrics_path: Path | None = None
    optimizer_state: dict | None = None
    schedule: GlobalSchedule | None = None
    progress: bool = True
    teacher: object = None
    reward_funcs: object = None
    stop: until.StopWhen | None = None  # recover until recovered: stop at the first check that passes


class OwnOptimizer:
    """Makes our AdamW (with the carried moments) and schedule when the Trainer asks for them."""

    def __init__(self, cfg: CommonConfig, state: dict | None, schedule: GlobalSchedule):
        self.cfg, self.state, self.schedule = cfg, state, schedule
        self.made, self.skipped = None, 0

    def optimizer(self, model):
        c = self.cfg
        betas = (c.adam_beta1, c.adam_beta2)
        self.made, self.skipped = make_optimizer(
            model, lr=c.learning_rate, weight_decay=c.weight_decay, betas=betas, eps=c.adam_epsilon,
            optimizer_state=self.state,
        )
        return self.made


class OwnOptimizerMixin:
    """The Trainer builds our optimizer itself (it refuses a ready one under FSDP or DeepSpeed), at the
    moment it would build its own: after FSDP2 sharded the model, so each parameter is its shard and
    takes its shard of the carried moments; DeepSpeed then wraps it."""

    own: OwnOptimizer

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            self.optimizer = self.own.optimizer(self.model if model is None else model)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            self.lr_scheduler = self.own.schedule.lambda_lr(self.optimizer if optimizer is None else optimizer)
        return self.lr_scheduler


def training_args(cfg: CommonConfig, ctx: Context, *, args_cls=TrainingArguments, **extra) -> TrainingArguments:
    """TrainingArguments (or a TRL config) for this call: CPU-safe, no checkpoints, no reporting."""
    sharding.check(cfg)
    cuda = torch.cuda.is_available()
    if cfg.bf16 and not (cuda and torch.cuda.is_bf16_supported()):
        raise UserError("config key 'bf16' needs a GPU with bf16 support; set bf16=false on CPU")
    kwargs = dict(
        output_dir=str(ctx.work_dir),
        max_steps=1,  # set by fit() once the world size is known
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        logging_nan_inf_filter=False,
        bf16=bool(cfg.bf16),
        fp16=False,
        use_cpu=not cuda,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        dataloader_num_workers=0,
        disable_tqdm=not ctx.progress,
        activation_checkpointing=bool(cfg.gradient_checkpointing),
        ddp_find_unused_parameters=False,
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        **sharding.training_kwargs(cfg, ctx.work_dir),
    )
    kwargs.update(extra)
    return args_cls(**kwargs)


def plan_steps(
    cfg: CommonConfig, args, n_examples: int, tokens_per_example: float, examples_per_step: int | None = None
) -> int:
    """max_steps, or steps for max_tokens, or one pass over the data (the paper's one epoch per chunk)."""
    per_step = (
        examples_per_step
        or args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    )
    if cfg.max_steps:
        return cfg.max_steps
    if cfg.max_tokens:
        return max(1, math.ceil(cfg.max_tokens / (per_step * max(1.0, tokens_per_example))))
    return max(1, math.ceil(n_examples / per_step))


def fit(
    trainer_cls,
    model,
    tokenizer,
    train_dataset,
    cfg: CommonConfig,
    ctx: Context,
    args,
    *,
    extra_metrics=(),
    check_loss: bool = True,
    **trainer_kwargs,
) -> RecoveryResult:
    """Train `model` (LoRA merged afterwards) with our AdamW + LambdaLR; returns the result. Sharded
    (fsdp, zero3), the result's model is a new plain module holding the gathered weights."""
    if cfg.sharding not in sharding.FSDP:  # FSDP2 places its shards itself (on CPU when offloading)
        model.to(args.device)
    use_lora = cfg.lora is not None
    train_model = lora_lib.wrap(model, cfg.lora, cfg.seed) if use_lora else model
    if cfg.gradient_checkpointing:
        train_model.config.use_cache = False
    shell = sharding.skeleton(train_model) if cfg.sharding in sharding.GATHERED else None
    train_model = sharding.shard(train_model, cfg)
    schedule = ctx.schedule or GlobalSchedule(
        args.max_steps, 0, cfg.warmup_ratio, cfg.lr_scheduler_type, cfg.decay_ratio
    )
    optimizer = OwnOptimizer(cfg, None if use_lora else ctx.optimizer_state, schedule)
    offset = ctx.schedule.start_step if ctx.schedule else 0
    cb = MetricsCallback(ctx.metrics_path, extra_metrics, cfg.max_tokens, offset)
    trainer = type(trainer_cls.__name__, (OwnOptimizerMixin, trainer_cls), {"own": optimizer})(
        model=train_model,
        args=args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        callbacks=[cb, DivergenceCallback(train_model, check_loss=check_loss), *until.callbacks(ctx.stop, train_model)],
        **trainer_kwargs,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if ctx.progress:  # a bar with the loss on it; the per-step dicts go to metrics.jsonl, not the terminal
        trainer.add_callback(BarOnlyProgress)
    trainer.train()
    carry = not use_lora and cfg.sharding not in sharding.ZERO  # ZeRO's moments are not per parameter
    state = export_optimizer_state(train_model, optimizer.made) if carry else None
    held = sharding.rank_bytes(train_model, optimizer.made)
    gather_s = None
    if shell is not None:  # timed: the cost planner does not model it (bench/gpu_check.py reports it)
        t0 = time.perf_counter()
        train_model = sharding.gather_model(trainer.model, shell, args.device)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        gather_s = round(time.perf_counter() - t0, 3)
    out = lora_lib.merge(train_model) if use_lora else train_model
    out.eval()
    tokens = int(trainer.state.num_input_tokens_seen or (cb.metrics[-1]["tokens"] if cb.metrics else 0))
    return RecoveryResult(
        model=out,
        metrics=cb.metrics,
        tokens_seen=tokens,
        steps=int(trainer.state.global_step),
        optimizer_state=state,
        info={"optimizer_state_skipped": optimizer.skipped, "world_size": args.world_size,
              "max_steps": args.max_steps, "rank_bytes": held, "gather_s": gather_s},
    )
