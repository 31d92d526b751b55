"""Gemma 2: alternating sliding/full attention (`layer_types`), four norms per layer, soft-capping, tied embeddings."""

from prunetune.models.adapter import FamilyAdapter

ADAPTER = FamilyAdapter(
    model_type="gemma2",
    norms_per_layer=4,
    heads_divide_hidden=True,
    final_logit_softcap="final_logit_softcapping",
    tiny_config={"sliding_window": 8, "query_pre_attn_scalar": 16, "final_logit_softcapping": 30.0,
                 "attn_logit_softcapping": 50.0, "tie_word_embeddings": True},
)
