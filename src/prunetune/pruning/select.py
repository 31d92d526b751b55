"""From importance scores to a PruningPlan: the lowest-scoring units in every layer (decide, never edit)."""

from __future__ import annotations

import torch

from prunetune.errors import UserError
from prunetune.pruning.plan import PruningPlan


def mlp_count(width: int, *, fraction: float | None = None, neurons: int | None = None, round_to: int = 1) -> int:
    """Neurons to remove per layer so the remaining width is a multiple of `round_to` (rounded to nearest)."""
    if (fraction is None) == (neurons is None):
        raise UserError("give exactly one of --mlp-fraction / --mlp-neurons")
    if fraction is not None:
        if not 0 <= fraction < 1:
            raise UserError(f"--mlp-fraction must be in [0, 1), got {fraction}")
        neurons = round(fraction * width)
    if not 0 <= neurons < width:
        raise UserError(f"--mlp-neurons must be in [0, {width}) (the layer has {width} neurons), got {neurons}")
    if round_to > 1:
        keep = max(round_to, round((width - neurons) / round_to) * round_to)
        neurons = max(0, width - keep)
    return neurons


def check_hidden_fraction(fraction: float) -> None:
    if not 0 < fraction < 1:
        raise UserError(f"--hidden-fraction must be in (0, 1), got {fraction}")


def hidden_count(width: int, fraction: float, round_to: int = 1) -> int:
    """Hidden channels to remove so the remaining hidden size is a multiple of `round_to` (nearest)."""
    check_hidden_fraction(fraction)
    keep = width - round(fraction * width)
    if round_to > 1:
        keep = max(round_to, round(keep / round_to) * round_to)
    if not 0 < keep < width:
        raise UserError(
            f"--hidden-fraction {fraction} of hidden_size {width} (round_to={round_to}) leaves {max(keep, 0)} channels: "
            "it must remove some and leave some"
        )
    return width - keep


def lowest(scores: torch.Tensor, k: int) -> list[int]:
    """Indices of the k lowest scores (ties broken by index, so plans are deterministic)."""
    if k <= 0:
        return []
    order = sorted(range(scores.numel()), key=lambda i: (float(scores[i]), i))
    return sorted(order[:k])


def plan_from_scores(
    *,
    mlp_scores: torch.Tensor | None = None,
    mlp_per_layer: int = 0,
    kv_scores: torch.Tensor | None = None,
    kv_per_layer: int = 0,
    layer_scores: torch.Tensor | None = None,
    num_layers: int = 0,
    layer_ids: list[int] | None = None,
    meta: dict | None = None,
) -> PruningPlan:
    plan = PruningPlan(meta=dict(meta or {}))
    if mlp_per_layer:
        assert mlp_scores is not None
        plan.mlp_neurons = {i: lowest(row, mlp_per_layer) for i, row in enumerate(mlp_scores)}
    if kv_per_layer:
        assert kv_scores is not None
        plan.kv_groups = {i: lowest(row, kv_per_layer) for i, row in enumerate(kv_scores)}
    if layer_ids:
        plan.layers = sorted(layer_ids)
    elif num_layers:
        assert layer_scores is not None
        plan.layers = lowest(layer_scores, num_layers)
    return plan


def add_moe_units(plan: PruningPlan, moe_layers, num_experts: int, *, expert_scores=None, experts: int = 0,
                  neuron_scores=None, expert_neurons: int = 0, shared_neurons: int = 0) -> PruningPlan:
    """The lowest experts, expert neurons (the same count in every expert) and shared-expert neurons of
    every MoE layer, into `plan`. Scores are rows in `moe_layers` order; `neuron_scores` is
    (experts [n, num_experts * width], shared [n, shared width] or None)."""
    if experts:
        plan.experts = {i: lowest(row, experts) for i, row in zip(moe_layers, expert_scores)}
    if expert_neurons:
        plan.expert_neurons = {}
        for i, row in zip(moe_layers, neuron_scores[0]):
            per_expert = row.reshape(num_experts, -1)
            width = per_expert.shape[1]
            plan.expert_neurons[i] = [e * width + n for e in range(num_experts) for n in lowest(per_expert[e], expert_neurons)]
    if shared_neurons:
        plan.shared_expert_neurons = {i: lowest(row, shared_neurons) for i, row in zip(moe_layers, neuron_scores[1])}
    return plan
