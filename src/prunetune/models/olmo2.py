"""OLMo 2: no pre-norms, a norm after attention and after the MLP, and q/k RMSNorms over the whole
projection width (num_heads * head_dim), not per head: KV-group pruning slices those norms' weights."""

from prunetune.models.adapter import FamilyAdapter

ADAPTER = FamilyAdapter(
    model_type="olmo2",
    qk_norm="proj",
    pre_norms=(),
    post_norms=("post_attention_layernorm", "post_feedforward_layernorm"),
    tiny_config={},
)
