"""OLMoE: every layer sparse, routed experts only, q/k RMSNorm over the WHOLE projection.

transformers 5.24 layout (`OlmoeSparseMoeBlock`): `mlp.gate` router [num_experts, hidden],
`mlp.experts.gate_up_proj` [E, 2 * intermediate_size, hidden], `mlp.experts.down_proj`
[E, hidden, intermediate_size] (`intermediate_size` is the expert width; the config aliases
`num_local_experts` to `num_experts`). `self_attn.q_norm` spans all heads * head_dim and `k_norm` all KV
heads * head_dim, so removing a KV group changes every other head's normalisation: KV-group pruning is
refused for this family (experts, expert neurons and layers are exact).

Routing: softmax over all experts (fp32) -> top-k -> renormalised only when `norm_topk_prob` (False in
OLMoE-1B-7B): without it a kept expert's weight is exp(l_e) / sum over every expert, so removing experts
raises the others' weights; it equals masking the removed experts' router logits to -inf before the
softmax, not zeroing their outputs. The load-balancing loss is the family's own.
"""

from prunetune.models.adapter import FamilyAdapter
from prunetune.models.moe import MoE

ADAPTER = FamilyAdapter(
    model_type="olmoe",
    qkv_bias="attention_bias",
    o_bias="attention_bias",
    qk_norm="proj",
    qk_norm_full=True,
    moe=MoE(
        num_experts="num_experts",
        width="intermediate_size",
        routing="softmax over all experts -> top-k -> renormalise if norm_topk_prob",
    ),
    tiny_config={"num_experts": 8, "num_experts_per_tok": 2, "intermediate_size": 32, "norm_topk_prob": False},
)
