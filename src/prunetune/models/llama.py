"""Llama (Llama 2/3.x, SmolLM2): separate q/k/v and gate/up projections; the reference layout."""

from prunetune.models.adapter import FamilyAdapter

ADAPTER = FamilyAdapter(model_type="llama", mlp_bias="mlp_bias", heads_divide_hidden=True, tiny_config={"attention_bias": True, "mlp_bias": True})
