"""Tiny random models of every supported family, built in code (tests, `tiny-random-<family>` smoke runs)."""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from prunetune.builtin.tokenizer import tiny_tokenizer
from prunetune.errors import UserError, did_you_mean
from prunetune.models import ADAPTERS, FAMILIES

TINY_PREFIX = "tiny-random-"


def tiny_config(family: str, vocab_size: int = 320, **overrides):
    """4 layers, hidden 64, MLP 96, 4 query heads in 2 KV groups of head_dim 16."""
    if family not in ADAPTERS:
        raise UserError(f"unknown family '{family}'{did_you_mean(family, FAMILIES)}; supported: {', '.join(FAMILIES)}")
    fields = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    fields.update(ADAPTERS[family].tiny_config)
    fields.update(overrides)
    return AutoConfig.for_model(family, **fields)


def tiny_model(family: str = "llama", seed: int = 0, dtype=torch.float32, **overrides):
    """A randomly initialised tiny model and its tokenizer, deterministic under `seed`."""
    tok = tiny_tokenizer()
    config = tiny_config(family, vocab_size=len(tok), **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.eval()
    return model, tok
