"""Qwen3-MoE (e.g. Qwen3-30B-A3B): routed experts only, per-head q/k RMSNorm as in Qwen3, optional dense layers.

transformers 5.24 layout (`Qwen3MoeSparseMoeBlock`): `mlp.gate` router [num_experts, hidden],
`mlp.experts.gate_up_proj` [E, 2 * moe_intermediate_size, hidden], `mlp.experts.down_proj`
[E, hidden, moe_intermediate_size]; no shared expert. Sparse layers are chosen by `mlp_only_layers` /
`decoder_sparse_step` as in Qwen2-MoE (released checkpoints: every layer sparse). The config aliases
`num_local_experts` to `num_experts`.

Routing: softmax over all experts (fp32) -> top-k -> renormalised when `norm_topk_prob` (True in the
released checkpoints; then the kept weights do not depend on the removed experts at all). Either way,
removing experts equals masking their router logits to -inf before the softmax. The load-balancing
loss is the family's own.
"""

from prunetune.models.adapter import FamilyAdapter
from prunetune.models.moe import MoE

ADAPTER = FamilyAdapter(
    model_type="qwen3_moe",
    qk_norm="head",
    moe=MoE(
        num_experts="num_experts",
        width="moe_intermediate_size",
        routing="softmax over all experts -> top-k -> renormalise if norm_topk_prob",
        sparse_step=True,
    ),
    tiny_config={"num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
                 "decoder_sparse_step": 2, "norm_topk_prob": True},
)
