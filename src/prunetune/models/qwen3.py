"""Qwen3: the Llama layout with per-head RMSNorm on queries and keys (q_norm / k_norm)."""

from prunetune.models.adapter import FamilyAdapter

ADAPTER = FamilyAdapter(model_type="qwen3", qk_norm="head", tiny_config={})
