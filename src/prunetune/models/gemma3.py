"""Gemma 3 text model (`gemma3_text`, Gemma3ForCausalLM: the 270M / 1B checkpoints): the Gemma 2 layout
(four (1 + w) norms per layer, sliding/full `layer_types`, tied embeddings, sqrt(hidden) embedding scale,
optional final soft-cap) with per-head_dim q/k norms."""

from dataclasses import replace

from prunetune.models import gemma2

ADAPTER = replace(
    gemma2.ADAPTER,
    model_type="gemma3_text",
    qk_norm="head",
    tiny_config={"sliding_window": 8, "sliding_window_pattern": 2, "query_pre_attn_scalar": 16,
                 "tie_word_embeddings": True},
)
