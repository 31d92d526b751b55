"""Validation of a plan's mixture-of-experts units: routed experts, expert neurons, shared-expert neurons.

The same number is removed from every sparse layer (and, for expert neurons, from every expert), so
one `num_experts` and one expert width remain and stock `from_pretrained` rebuilds the model. At least
`num_experts_per_tok` experts must remain, or the router's top-k has nothing to choose from.
"""

from __future__ import annotations

from prunetune.errors import UserError
from prunetune.models.shape import ModelShape


def validate_moe(plan, shape: ModelShape) -> None:
    """Raise UserError naming the plan key for any MoE unit that cannot be removed as given."""
    named = plan.experts or plan.expert_neurons or plan.shared_expert_neurons
    if named and not shape.moe_layers:
        raise UserError(f"plan.experts: '{shape.model_type}' is a dense model (no MoE layers); nothing to remove")
    sparse, kind = shape.moe_layers, "MoE layer"
    E, k = shape.num_experts, shape.experts_per_tok
    plan._check_uniform("experts", plan.experts, sparse, E, "experts", kind)
    if plan.experts and E - plan.experts_per_layer < k:
        raise UserError(
            f"plan.experts: removing {plan.experts_per_layer} of {E} experts leaves {E - plan.experts_per_layer}, "
            f"fewer than num_experts_per_tok={k} (at most {E - k} can go)"
        )
    width = shape.moe_intermediate_size
    plan._check_uniform("expert_neurons", plan.expert_neurons, sparse, E * width, "expert neurons", kind)
    for layer, flat in plan.expert_neurons.items():
        per_expert = {e: 0 for e in range(E)}
        for j in flat:
            per_expert[j // width] += 1
        counts = set(per_expert.values())
        if len(counts) != 1:
            raise UserError(f"plan.expert_neurons[{layer}]: the same number of neurons must go from every expert")
        if counts.pop() >= width:
            raise UserError(f"plan.expert_neurons[{layer}]: removing every neuron of an expert leaves none")
    if plan.shared_expert_neurons and not shape.shared_expert_intermediate_size:
        raise UserError(f"plan.shared_expert_neurons: '{shape.model_type}' has no shared expert")
    plan._check_uniform("shared_expert_neurons", plan.shared_expert_neurons, sparse,
                        shape.shared_expert_intermediate_size, "shared-expert neurons", kind)


def moe_widths(shape: ModelShape, after: ModelShape, constraints) -> None:
    """Expert widths this plan changes, against round_to and tensor_parallel."""
    for name, before, value in (
        ("expert width", shape.moe_intermediate_size, after.moe_intermediate_size),
        ("shared_expert_intermediate_size", shape.shared_expert_intermediate_size, after.shared_expert_intermediate_size),
    ):
        if value == before:
            continue
        if value % constraints.round_to:
            raise UserError(f"{name} after pruning ({value}) is not a multiple of round_to={constraints.round_to}")
        if value % constraints.tensor_parallel:
            raise UserError(f"{name} after pruning ({value}) is not divisible by tensor_parallel={constraints.tensor_parallel}")
