"""How a mixture-of-experts family lays out its sparse block: the names surgery and the expert scorers use.

transformers 5 stores each layer's routed experts as two fused 3-D parameters on one `experts` module,
`gate_up_proj` [num_experts, 2 * width, hidden] (gate rows, then up rows) and `down_proj`
[num_experts, hidden, width], next to a router (`gate`) whose `weight` is [num_experts, hidden] and
which returns (router_logits, top-k weights, top-k indices). Families differ in config names, in an
optional shared expert, and in which layers are sparse; this dataclass holds those differences as data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class MoE:
    num_experts: str
    """Config field holding the routed-expert count (`num_experts` or `num_local_experts`)."""
    width: str
    """Config field holding each routed expert's MLP width (`moe_intermediate_size` or `intermediate_size`)."""
    routing: str
    """How router logits become expert weights, in words (said once, in the family's adapter)."""
    norm_topk: str | bool = "norm_topk_prob"
    """Whether the top-k softmax weights are renormalised to sum to 1: a constant or a config flag."""
    top_k: str = "num_experts_per_tok"
    block: str = "mlp"
    """Attribute of the decoder layer holding the sparse block (a dense MLP in dense layers)."""
    router: str = "gate"
    experts: str = "experts"
    shared: str | None = None
    """Attribute of the sparse block holding an always-on shared expert MLP (gate/up/down Linears)."""
    shared_width: str | None = None
    """Config field holding the shared expert's width."""
    shared_gate: str | None = None
    """Attribute of the sparse block holding the shared expert's sigmoid gate, a Linear(hidden, 1)."""
    sparse_step: bool = False
    """Sparse layers chosen by `mlp_only_layers` and `decoder_sparse_step` (Qwen MoE); else every layer."""
    gate_up: str = "gate_up_proj"
    """Fused [E, 2 * width, hidden] parameter of the experts module: gate rows, then up rows."""
    down: str = "down_proj"
    """[E, hidden, width] parameter of the experts module."""
    act: str = "act_fn"

    # ---- config ------------------------------------------------------------------------------
    def layer_ids(self, config) -> tuple[int, ...]:
        """The decoder layers holding a sparse block, as the family's modeling code decides them."""
        n = config.num_hidden_layers
        if not self.sparse_step:
            return tuple(range(n))
        dense, step = set(config.mlp_only_layers or ()), config.decoder_sparse_step
        if getattr(config, self.num_experts) <= 0:
            return ()
        return tuple(i for i in range(n) if i not in dense and (i + 1) % step == 0)

    def set_layer_ids(self, config, sparse: list[int]) -> None:
        """After layers are removed: keep the same layers sparse by naming the dense ones explicitly."""
        if not self.sparse_step:
            assert len(sparse) == config.num_hidden_layers, "a family without dense layers lost its MoE"
            return
        config.decoder_sparse_step = 1
        config.mlp_only_layers = [i for i in range(config.num_hidden_layers) if i not in set(sparse)]

    def flag(self, config) -> bool:
        return bool(getattr(config, self.norm_topk, False)) if isinstance(self.norm_topk, str) else self.norm_topk

    def set_config(self, config, *, num_experts: int, width: int, shared_width: int) -> None:
        setattr(config, self.num_experts, num_experts)
        setattr(config, self.width, width)
        if self.shared_width:
            setattr(config, self.shared_width, shared_width)

    # ---- modules -----------------------------------------------------------------------------
    def router_module(self, layer) -> nn.Module:
        """Holds `weight` [num_experts, hidden]; forward returns (logits, top-k weights, top-k indices)."""
        return getattr(getattr(layer, self.block), self.router)

    def experts_module(self, layer) -> nn.Module:
        """Holds `gate_up_proj` [E, 2 * width, hidden] and `down_proj` [E, hidden, width]."""
        return getattr(getattr(layer, self.block), self.experts)

    def expert_forward(self, experts: nn.Module, e: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Expert `e` on tokens `x` [n, hidden]: (act(gate) * up [n, width], output [n, hidden]), unweighted."""
        gate, up = F.linear(x, getattr(experts, self.gate_up)[e]).chunk(2, dim=-1)
        act = getattr(experts, self.act)(gate) * up
        return act, F.linear(act, getattr(experts, self.down)[e])

    def shared_module(self, layer) -> nn.Module | None:
        return getattr(getattr(layer, self.block), self.shared) if self.shared else None

    def set_counts(self, model, layer, *, num_experts: int, width: int, shared_width: int) -> None:
        """Attributes the modeling code caches from the config at construction, kept in step with surgery."""
        self.router_module(layer).num_experts = num_experts
        experts = self.experts_module(layer)
        experts.num_experts, experts.intermediate_dim = num_experts, width
        if self.shared:
            self.shared_module(layer).intermediate_size = shared_width
        if hasattr(model, "num_experts"):  # the CausalLM caches it for the load-balancing loss
            model.num_experts = num_experts
