"""Qwen2 / Qwen2.5: the Llama layout with biases on q, k and v; head_dim is implicit in its config."""

from prunetune.models.adapter import FamilyAdapter

ADAPTER = FamilyAdapter(model_type="qwen2", qkv_bias=True, o_bias=False, tiny_config={})
