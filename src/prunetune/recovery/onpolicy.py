"""On-policy distillation (GKD, Agarwal et al. 2024): the student writes completions to the prompts, the
frozen teacher's next-token distribution on them is the target (generalised JSD: forward KL, reverse KL
or between).

Through TRL's `DistillationTrainer` (trl >= 1.x: the maintained successor of `trl.experimental.gkd`'s
GKDTrainer, which TRL itself points to for the fully on-policy case; it computes the divergence in chunks
so the [tokens, vocab] logits of both models are never held whole). Our AdamW, schedule, divergence
watch and metrics come from trainer.fit() like every other tuner's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from prunetune.config import bounded
from prunetune.errors import UserError
from prunetune.recovery.distill import prepare_teacher
from prunetune.recovery.trainer import (
    TUNERS,
    CommonConfig,
    Context,
    FiniteLossMixin,
    RecoveryResult,
    fit,
    training_args,
)


@dataclass
class OnPolicyConfig(CommonConfig):
    learning_rate: float = bounded(5e-5, gt=0.0)
    """Peak AdamW learning rate."""
    per_device_train_batch_size: int = bounded(4, ge=1)
    """Prompts (one completion each) per device per micro-batch."""
    max_completion_length: int = bounded(64, ge=1)
    """New tokens the student writes per prompt (small for CPU)."""
    temperature: float = bounded(1.0, gt=0.0)
    """Sampling temperature of the student's completions, and of both distributions in the divergence."""
    top_p: float = bounded(1.0, gt=0.0, le=1.0)
    """Nucleus sampling of the student's completions."""
    beta: float = bounded(1.0, ge=0.0, le=1.0)
    """Generalised JSD interpolation: 0 forward KL(teacher || student), 1 reverse KL(student || teacher)
    (GKD's on-policy default), 0.5 the symmetric JSD."""
    prompt_field: str = "prompt"
    """Record field holding the prompt (recovery.prompts gives such records)."""

    def __post_init__(self):
        super().__post_init__()
        if self.max_tokens is not None:
            raise UserError("onpolicy does not support config key 'max_tokens' (the student decides the lengths): use max_steps")


def _trainer_cls():
    from trl import DistillationTrainer

    class OnPolicyTrainer(FiniteLossMixin, DistillationTrainer):
        pass

    return OnPolicyTrainer


@TUNERS.register("onpolicy", options=OnPolicyConfig)
def train(model, tokenizer, records: list[dict], cfg: OnPolicyConfig, ctx: Context) -> RecoveryResult:
    """On-policy distillation: the student samples, the teacher's log-probs supervise (TRL DistillationTrainer)."""
    import datasets
    from trl import DistillationConfig

    field = cfg.prompt_field
    if field not in records[0]:
        raise UserError(f"onpolicy data has no field '{field}' (prompt_field); fields are: {', '.join(map(str, records[0]))}")
    if tokenizer.eos_token_id is None:
        raise UserError("onpolicy: the tokenizer has no EOS token, so the student's completions never end")
    args = training_args(
        cfg,
        ctx,
        args_cls=DistillationConfig,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        beta=cfg.beta,
        log_completions=False,
        gradient_checkpointing=bool(cfg.gradient_checkpointing),
        include_num_input_tokens_seen="no",  # the prompts alone; the completions are counted below
    )
    teacher = prepare_teacher(ctx.teacher, model, None, args.device)
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    args.max_steps = cfg.max_steps or max(1, math.ceil(len(records) / per_step))
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # DistillationTrainer's prompts are left-padded for generation
    prompts = [r[field] for r in records]
    prompts = (prompts * math.ceil(per_step / len(prompts)))[: max(per_step, len(prompts))]  # a full batch at least
    data = datasets.Dataset.from_list([{"prompt": p} for p in prompts])
    try:
        res = fit(_trainer_cls(), model, tokenizer, data, cfg, ctx, args, teacher_model=teacher,
                  check_loss=False)  # a divergence, not a fit: it may rise as the student explores
    finally:
        tokenizer.padding_side = side
    return res
