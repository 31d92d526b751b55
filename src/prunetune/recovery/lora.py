"""LoRA as an option on cpt / sft / distill: train an adapter with peft, then merge it into the weights.

Merging before returning keeps every checkpoint a stock one (base architecture keys only), so the
next pruning step and any reader see a plain model.
"""

from __future__ import annotations

import torch

from prunetune.errors import UserError


def wrap(model, lora, seed: int = 0):
    """A peft model with a fresh LoRA adapter (`lora`: trainer.LoraOptions) on its target modules."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model._prunetune_requires_grad = {n: p.requires_grad for n, p in model.named_parameters()}
    try:
        cfg = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            target_modules=lora.target_modules,
            lora_dropout=lora.dropout,
            task_type="CAUSAL_LM",
        )
        return get_peft_model(model, cfg)
    except ValueError as e:
        raise UserError(f"lora: {str(e).splitlines()[0]}") from None


def merge(peft_model):
    """Fold the adapter into the base weights and drop every peft module; returns the base model object."""
    model = peft_model.merge_and_unload()
    if hasattr(model, "peft_config"):
        del model.peft_config
    # peft froze the base weights; give them back their trainability for the next pruning step.
    saved = model.__dict__.pop("_prunetune_requires_grad", {})
    for n, p in model.named_parameters():
        p.requires_grad_(saved.get(n, True))
    return model
