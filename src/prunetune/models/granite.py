"""Granite (3.x dense): the Llama layout scaled by config scalars (embedding_multiplier,
residual_multiplier, attention_multiplier in place of 1/sqrt(head_dim), logits_scaling); pruning
leaves them as they are."""

from prunetune.models.adapter import FamilyAdapter

ADAPTER = FamilyAdapter(
    model_type="granite",
    mlp_bias="mlp_bias",
    logits_divisor="logits_scaling",
    tiny_config={"embedding_multiplier": 6.0, "residual_multiplier": 0.5, "attention_multiplier": 0.125,
                 "logits_scaling": 4.0, "attention_bias": True, "mlp_bias": True},
)
