"""Qwen1.5-MoE / Qwen2-MoE: routed experts plus an always-on shared expert, and optional dense layers.

transformers 5.24 layout (`Qwen2MoeSparseMoeBlock`): `mlp.gate` router [num_experts, hidden],
`mlp.experts.gate_up_proj` [E, 2 * moe_intermediate_size, hidden] and `mlp.experts.down_proj`
[E, hidden, moe_intermediate_size], `mlp.shared_expert` (a gate/up/down MLP of width
`shared_expert_intermediate_size`) scaled by sigmoid(`mlp.shared_expert_gate`), a Linear(hidden, 1).
A layer is sparse unless it is in `mlp_only_layers` or (i + 1) % `decoder_sparse_step` != 0; dense layers
hold a plain MLP of width `intermediate_size`. q/k/v carry biases (`qkv_bias`).

Routing: softmax over ALL experts (fp32), top-k of the probabilities, then renormalised only when
`norm_topk_prob` (False in the released checkpoints). Without renormalisation a kept expert's weight is
exp(l_e) / sum over every expert, so removing experts is NOT the same as zeroing their outputs: it
raises the other weights. It is exactly the same as masking the removed experts' router logits to -inf
before the softmax (the softmax then runs over the kept experts alone), which is what the tests check.
The load-balancing loss (`output_router_logits`, `router_aux_loss_coef`) is the family's own, over the
experts that remain.

Serving: vLLM 0.32's Qwen2-MoE derives head_dim as hidden_size / num_attention_heads, ignoring the
config's `head_dim`, so a Qwen2-MoE whose KV groups were pruned loads in transformers but not in vLLM
(no stock MoE family with q/k/v biases and a shared expert could carry it instead); a warning says so.
"""

from prunetune.models.adapter import FamilyAdapter
from prunetune.models.moe import MoE

ADAPTER = FamilyAdapter(
    model_type="qwen2_moe",
    qkv_bias="qkv_bias",
    o_bias=False,
    moe=MoE(
        num_experts="num_experts",
        width="moe_intermediate_size",
        routing="softmax over all experts -> top-k -> renormalise if norm_topk_prob",
        shared="shared_expert",
        shared_width="shared_expert_intermediate_size",
        shared_gate="shared_expert_gate",
        sparse_step=True,
    ),
    tiny_config={"num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
                 "shared_expert_intermediate_size": 48, "mlp_only_layers": [1], "norm_topk_prob": False},
)
