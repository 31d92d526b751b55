"""Mistral: the Llama layout with a (possibly absent) sliding window on every layer."""

from prunetune.models.adapter import FamilyAdapter

ADAPTER = FamilyAdapter(model_type="mistral", qkv_bias=False, o_bias=False, tiny_config={"sliding_window": 8})
