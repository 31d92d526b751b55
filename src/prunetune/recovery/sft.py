"""Supervised fine-tuning: prompt/completion or chat data, loss on the completion tokens only."""

from __future__ import annotations

from prunetune.recovery.cpt import CPTTrainer
from prunetune.recovery.examples import PadCollator, pair_examples
from prunetune.recovery.trainer import (
    TUNERS,
    Context,
    PairsConfig,
    RecoveryResult,
    fit,
    plan_steps,
    training_args,
)


@TUNERS.register("sft", options=PairsConfig)
def train(model, tokenizer, records: list[dict], cfg: PairsConfig, ctx: Context) -> RecoveryResult:
    """Supervised fine-tuning: prompt/completion or chat records, loss on the completion tokens only."""
    examples = pair_examples(
        tokenizer,
        records,
        prompt_field=cfg.prompt_field,
        completion_field=cfg.completion_field,
        messages_field=cfg.messages_field,
        max_length=cfg.max_length,
        chat_template=cfg.chat_template,
    )
    args = training_args(cfg, ctx)
    mean_len = sum(len(e["input_ids"]) for e in examples) / len(examples)
    args.max_steps = plan_steps(cfg, args, len(examples), mean_len)
    # Same Trainer as cpt: the labels already hold -100 on prompt tokens, so the model's loss is the SFT loss.
    return fit(
        CPTTrainer,
        model,
        tokenizer,
        examples,
        cfg,
        ctx,
        args,
        data_collator=PadCollator(tokenizer.pad_token_id),
    )
