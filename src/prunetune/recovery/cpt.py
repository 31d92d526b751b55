"""Continual pre-training: causal-LM loss on packed fixed-length blocks of raw text (the paper's recovery)."""

from __future__ import annotations

from transformers import Trainer

from prunetune.recovery.examples import PadCollator, pack_blocks, record_texts
from prunetune.recovery.trainer import (
    TUNERS,
    Context,
    FiniteLossMixin,
    RecoveryResult,
    TextConfig,
    fit,
    plan_steps,
    training_args,
)


class CPTTrainer(FiniteLossMixin, Trainer):
    """The stock Trainer (the model computes its own LM loss) plus the NaN/inf stop."""


@TUNERS.register("cpt", options=TextConfig)
def train(model, tokenizer, records: list[dict], cfg: TextConfig, ctx: Context) -> RecoveryResult:
    """Continual pre-training: causal-LM loss on packed blocks of raw text (the paper's recovery)."""
    texts = record_texts(records, cfg.text_field, cfg.template)
    blocks = pack_blocks(tokenizer, texts, cfg.max_length)
    args = training_args(cfg, ctx)
    args.max_steps = plan_steps(cfg, args, len(blocks), cfg.max_length)
    return fit(
        CPTTrainer,
        model,
        tokenizer,
        blocks,
        cfg,
        ctx,
        args,
        data_collator=PadCollator(tokenizer.pad_token_id),
    )
