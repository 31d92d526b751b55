"""Phi-3: fused qkv_proj ([q; k; v] rows) and gate_up_proj ([gate; up] rows)."""

from prunetune.models.adapter import FamilyAdapter

ADAPTER = FamilyAdapter(
    model_type="phi3",
    qkv_bias=False,
    o_bias=False,
    mlp_in=(("gate_up_proj", ("mlp", "mlp")),),
    attn_in=(("qkv_proj", ("q", "k", "v")),),
    attn_module_counts=("num_key_value_heads",),
    tiny_config={"pad_token_id": 0},
)
