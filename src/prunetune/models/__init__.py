"""Model families: adapter lookup by `config.model_type`, model shapes from configs, tiny test models."""

from __future__ import annotations

from prunetune.errors import UserError
from prunetune.models import (
    gemma2,
    gemma3,
    granite,
    llama,
    mistral,
    mixtral,
    olmo2,
    olmoe,
    phi3,
    qwen2,
    qwen2_moe,
    qwen3,
    qwen3_moe,
    smollm3,
)
from prunetune.models.adapter import FamilyAdapter, RowBlocks

ADAPTERS: dict[str, FamilyAdapter] = {
    m.ADAPTER.model_type: m.ADAPTER
    for m in (llama, mistral, qwen2, qwen3, gemma2, phi3, gemma3, olmo2, smollm3, granite,
              qwen2_moe, qwen3_moe, mixtral, olmoe)
}
FAMILIES = tuple(ADAPTERS)
DENSE_FAMILIES = tuple(k for k, a in ADAPTERS.items() if a.moe is None)
MOE_FAMILIES = tuple(k for k, a in ADAPTERS.items() if a.moe is not None)
_HINTS = {
    "gemma3": " (multimodal Gemma 3; only its text-only checkpoints, model_type 'gemma3_text', are supported)",
}


def get_adapter(model_or_config) -> FamilyAdapter:
    """The adapter for a model or config; an unsupported family is a UserError listing supported ones."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type not in ADAPTERS:
        raise UserError(
            f"unsupported model family '{model_type}'{_HINTS.get(model_type, '')}; supported: {', '.join(FAMILIES)}"
        )
    return ADAPTERS[model_type]


__all__ = ["ADAPTERS", "DENSE_FAMILIES", "FAMILIES", "MOE_FAMILIES", "FamilyAdapter", "RowBlocks", "get_adapter"]
