"""SmolLM3: the Llama layout with some layers without rotary embeddings (`no_rope_layers`, 1 = RoPE),
a per-layer list sliced with `layer_types` when layers are removed."""

from prunetune.models.adapter import FamilyAdapter

ADAPTER = FamilyAdapter(
    model_type="smollm3",
    mlp_bias="mlp_bias",
    per_layer_config=("layer_types", "no_rope_layers"),
    tiny_config={"no_rope_layer_interval": 2},
)
