"""Gemma 3 text model (`gemma3_text`, Gemma3ForCausalLM: the 270M / 1B checkpoints): the Gemma 2 layout
(four (1 + w) norms per layer, sliding/full `layer_types`, tied embeddings) with per-head_dim q/k norms."""

from prunetune.models.adapter import FamilyAdapter

ADAPTER = FamilyAdapter(
    model_type="gemma3_text",
    norms_per_layer=4,
    qk_norm="head",
    heads_divide_hidden=True,
    final_logit_softcap="final_logit_softcapping",
    pre_norms=("input_layernorm", "pre_feedforward_layernorm"),
    post_norms=("post_attention_layernorm", "post_feedforward_layernorm"),
    norm_offset=1.0,
    embed_scale=True,
    tiny_config={"sliding_window": 8, "sliding_window_pattern": 2, "query_pre_attn_scalar": 16,
                 "tie_word_embeddings": True},
)
