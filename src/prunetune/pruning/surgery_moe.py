"""Surgery on sparse blocks, called from `surgery.apply_plan` (the one entry point that edits a model).

Per sparse layer: drop routed experts (their slices of the fused gate/up and down tensors and their
router rows), drop neurons inside every kept expert (gate and up rows, down columns), and drop
shared-expert neurons; then the config's expert count and widths and the modules' cached counts follow.
"""

from __future__ import annotations

import torch

from prunetune.models import get_adapter
from prunetune.models.shape import ModelShape


def _keep(n: int, removed) -> torch.Tensor:
    drop = set(removed)
    return torch.tensor([i for i in range(n) if i not in drop], dtype=torch.long)


def _expert_neuron_keep(flat: list[int], kept_experts: torch.Tensor, width: int) -> torch.Tensor:
    """[kept experts, kept width] neuron indices per kept expert, from flat expert * width + neuron ids."""
    removed: dict[int, set[int]] = {}
    for j in flat:
        removed.setdefault(j // width, set()).add(j % width)
    return torch.stack([_keep(width, removed.get(int(e), ())) for e in kept_experts])


@torch.no_grad()
def apply_moe(model, plan, shape: ModelShape, after: ModelShape, slicer) -> None:
    adapter = get_adapter(model)
    moe = adapter.moe
    E, width, shared_width = shape.num_experts, shape.moe_intermediate_size, shape.shared_expert_intermediate_size
    layers = adapter.layers(model)
    for i in shape.moe_layers:
        layer = layers[i]
        experts = moe.experts_module(layer)
        keep_e = _keep(E, plan.experts.get(i, ()))
        keep_n = _expert_neuron_keep(plan.expert_neurons.get(i, []), keep_e, width)  # [E', I']
        rows = torch.cat([keep_n, keep_n + width], dim=1)  # gate rows, then up rows

        def gate_up(t, keep_e=keep_e, rows=rows):
            t = t.index_select(0, keep_e.to(t.device))
            return torch.gather(t, 1, rows.to(t.device)[:, :, None].expand(-1, -1, t.shape[2]))

        def down(t, keep_e=keep_e, keep_n=keep_n):
            t = t.index_select(0, keep_e.to(t.device))
            return torch.gather(t, 2, keep_n.to(t.device)[:, None, :].expand(-1, t.shape[1], -1))

        slicer.param(experts, moe.gate_up, gate_up)
        slicer.param(experts, moe.down, down)
        router = moe.router_module(layer)
        slicer.param(router, "weight", lambda t, keep_e=keep_e: t.index_select(0, keep_e.to(t.device)))
        if getattr(router, "bias", None) is not None:
            slicer.param(router, "bias", lambda t, keep_e=keep_e: t.index_select(0, keep_e.to(t.device)))
        if plan.shared_expert_neurons:
            shared = moe.shared_module(layer)
            keep_s = _keep(shared_width, plan.shared_expert_neurons[i])
            for name, blocks in adapter.mlp_in:
                rows_s = torch.cat([keep_s + j * shared_width for j in range(len(blocks))])
                slicer(getattr(shared, name), rows=rows_s)
            slicer(getattr(shared, adapter.mlp_out), cols=keep_s)
        moe.set_counts(model, layer, num_experts=after.num_experts, width=after.moe_intermediate_size,
                       shared_width=after.shared_expert_intermediate_size)
    moe.set_config(model.config, num_experts=after.num_experts, width=after.moe_intermediate_size,
                   shared_width=after.shared_expert_intermediate_size)
