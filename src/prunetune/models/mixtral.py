"""Mixtral: every layer sparse, routed experts only, Mistral attention.

transformers 5.24 layout (`MixtralSparseMoeBlock`): `mlp.gate` router [num_local_experts, hidden],
`mlp.experts.gate_up_proj` [E, 2 * intermediate_size, hidden], `mlp.experts.down_proj`
[E, hidden, intermediate_size]: here `intermediate_size` IS the expert width (there is no dense MLP).
`router_jitter_noise` only acts in training.

Routing: softmax over all experts (fp32) -> top-k -> always renormalised (no flag), so the kept experts'
weights never depend on removed ones; removing experts equals masking their router logits to -inf
before the softmax. The load-balancing loss is the family's own.
"""

from prunetune.models.adapter import FamilyAdapter
from prunetune.models.moe import MoE

ADAPTER = FamilyAdapter(
    model_type="mixtral",
    qkv_bias=False,
    o_bias=False,
    moe=MoE(
        num_experts="num_local_experts",
        width="intermediate_size",
        routing="softmax over all experts -> top-k -> always renormalise",
        norm_topk=True,
    ),
    tiny_config={"num_local_experts": 8, "num_experts_per_tok": 2, "intermediate_size": 32},
)
