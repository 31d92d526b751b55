"""One pruning step: score the current model, pick the lowest units, and hand the plan to surgery.

This is what both `prunetune prune` and every iteration of the loop call. Scoring never edits;
only `surgery.apply_plan` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from prunetune.errors import UserError
from prunetune.models.shape import ModelShape
from prunetune.pruning.plan import Constraints, PruningPlan
from prunetune.pruning.select import add_moe_units, lowest, plan_from_scores
from prunetune.pruning.surgery import OptimizerState, apply_plan


@dataclass
class StepSpec:
    """How much to remove in this step, and how to score it."""

    mlp_neurons: int = 0
    """MLP intermediate neurons removed from EVERY layer."""
    kv_groups: int = 0
    """KV groups (one KV head with its query heads) removed from every layer."""
    layers: int = 0
    """Whole decoder layers removed (the lowest-scoring ones), unless `layer_ids` names them."""
    layer_ids: list[int] = field(default_factory=list)
    mlp_importance: str = "activation"
    kv_importance: str = "activation"
    layer_importance: str = "block_influence"
    mlp_options: dict = field(default_factory=dict)
    """Options of the MLP scorer (see `prunetune ls -v`)."""
    kv_options: dict = field(default_factory=dict)
    layer_options: dict = field(default_factory=dict)
    layerwise: bool = False
    """Score one decoder layer at a time on the compute device (importance/layerwise.py)."""
    experts: int = 0
    """Routed experts removed from every MoE layer (router rows with them)."""
    expert_neurons: int = 0
    """Neurons removed from every routed expert of every MoE layer."""
    shared_expert_neurons: int = 0
    """Shared-expert neurons removed from every MoE layer (Qwen2-MoE)."""
    expert_importance: str = "reap"
    expert_neuron_importance: str = "activation"
    hidden_channels: int = 0
    """Residual-stream channels removed (hidden_size shrinks by this; the same channels everywhere)."""
    hidden_importance: str = "activation"
    hidden_options: dict = field(default_factory=dict)

    @property
    def removes_layers(self) -> int:
        return len(self.layer_ids) or self.layers


def check_spec(spec: StepSpec) -> None:
    """Scorer names and options checked before any scoring work (errors name the recipe key)."""
    from prunetune.pruning.importance import (
        EXPERT_NEURON_SCORERS,
        EXPERT_SCORERS,
        HIDDEN_SCORERS,
        KV_SCORERS,
        LAYER_SCORERS,
        MLP_SCORERS,
        check_options,
    )
    from prunetune.pruning.importance.layerwise import check_layerwise

    EXPERT_SCORERS.entry(spec.expert_importance)
    EXPERT_NEURON_SCORERS.entry(spec.expert_neuron_importance)
    for kind, registry, name, options in (
        ("mlp", MLP_SCORERS, spec.mlp_importance, spec.mlp_options),
        ("kv", KV_SCORERS, spec.kv_importance, spec.kv_options),
        ("layer", LAYER_SCORERS, spec.layer_importance, spec.layer_options),
        ("hidden", HIDDEN_SCORERS, spec.hidden_importance, spec.hidden_options),
    ):
        registry.entry(name)
        check_options(registry, name, options, f"prune.{kind}_options")
        if spec.layerwise:
            check_layerwise(registry, name)


def decide(
    model,
    spec: StepSpec,
    calibration: list[dict],
    *,
    general: list[dict] | None = None,
    seed: int = 0,
    progress: bool = True,
    mlp_scores=None,
) -> PruningPlan:
    """Score what `spec` asks to remove and return the plan (the model is not edited).

    `mlp_scores`: this model's MLP scores when the caller already has them (the damage-sized loop scored
    them to choose the cut), so they are not computed twice.
    """
    from prunetune.pruning import importance

    shape = ModelShape.from_config(model.config)
    kv_scores = layer_scores = None
    if mlp_scores is not None:
        assert tuple(mlp_scores.shape) == (shape.num_hidden_layers, shape.intermediate_size), "stale MLP scores"
    if spec.mlp_neurons and mlp_scores is None:
        mlp_scores = importance.score_mlp(
            model,
            spec.mlp_importance,
            calibration,
            general_batches=general,
            seed=seed,
            progress=progress,
            options=spec.mlp_options,
            layerwise=spec.layerwise,
        )
    if spec.kv_groups:
        kv_scores = importance.score_kv_groups(
            model, spec.kv_importance, calibration, seed=seed, progress=progress, options=spec.kv_options,
            layerwise=spec.layerwise,
        )
    if spec.layers and not spec.layer_ids:
        layer_scores = importance.score_layers(
            model, spec.layer_importance, calibration, progress=progress, options=spec.layer_options,
            layerwise=spec.layerwise,
        )
    meta = {
        "shape_before": shape.to_dict(),
        "mlp_importance": spec.mlp_importance if spec.mlp_neurons else None,
        "kv_importance": spec.kv_importance if spec.kv_groups else None,
        "layer_importance": (
            spec.layer_importance
            if spec.layers and not spec.layer_ids
            else ("explicit" if spec.layer_ids else None)
        ),
    }
    if layer_scores is not None:
        meta["layer_scores"] = [round(float(s), 6) for s in layer_scores]
    if spec.hidden_channels:
        meta["hidden_importance"] = spec.hidden_importance
    plan = plan_from_scores(
        mlp_scores=mlp_scores,
        mlp_per_layer=spec.mlp_neurons,
        kv_scores=kv_scores,
        kv_per_layer=spec.kv_groups,
        layer_scores=layer_scores,
        num_layers=spec.layers,
        layer_ids=spec.layer_ids,
        meta=meta,
    )
    if spec.hidden_channels:
        scores = importance.score_hidden(
            model, spec.hidden_importance, calibration, seed=seed, progress=progress, options=spec.hidden_options
        )
        plan.hidden_channels = lowest(scores, spec.hidden_channels)
    return _decide_moe(model, spec, plan, shape, calibration, seed=seed, progress=progress)


def _decide_moe(model, spec: StepSpec, plan: PruningPlan, shape: ModelShape, calibration, *, seed, progress):
    from prunetune.pruning import importance

    expert_scores = neuron_scores = None
    if spec.experts:
        expert_scores = importance.score_experts(model, spec.expert_importance, calibration, seed=seed, progress=progress)
        plan.meta["expert_importance"] = spec.expert_importance
    if spec.expert_neurons or spec.shared_expert_neurons:
        neuron_scores = importance.score_expert_neurons(
            model, spec.expert_neuron_importance, calibration, seed=seed, progress=progress)
        plan.meta["expert_neuron_importance"] = spec.expert_neuron_importance
    return add_moe_units(plan, shape.moe_layers, shape.num_experts, expert_scores=expert_scores,
                         experts=spec.experts, neuron_scores=neuron_scores, expert_neurons=spec.expert_neurons,
                         shared_neurons=spec.shared_expert_neurons)


def prune_step(
    model,
    spec: StepSpec,
    calibration: list[dict],
    *,
    general: list[dict] | None = None,
    constraints: Constraints = Constraints(),
    seed: int = 0,
    progress: bool = True,
    optimizer_state: OptimizerState | None = None,
    mlp_scores=None,
) -> tuple[PruningPlan, OptimizerState | None]:
    """Decide, validate, then cut. Validation of the AMOUNTS happens before any scoring work."""
    shape = ModelShape.from_config(model.config)
    dry = PruningPlan.amounts(
        shape, mlp=spec.mlp_neurons, kv=spec.kv_groups, layers=list(spec.layer_ids) or spec.layers,
        experts=spec.experts, expert_neurons=spec.expert_neurons, shared=spec.shared_expert_neurons,
        hidden=spec.hidden_channels,
    )
    dry.validate(shape, constraints)
    if spec.mlp_neurons and shape.moe_layers:  # the MLP scorers hook every layer's dense MLP
        raise UserError("--mlp-fraction / mlp: MLP neuron scoring on a MoE model is not supported yet; "
                        "prune expert_neurons / shared_expert_neurons")
    check_spec(spec)
    plan = decide(model, spec, calibration, general=general, seed=seed, progress=progress, mlp_scores=mlp_scores)
    with torch.no_grad():
        optimizer_state = apply_plan(model, plan, constraints=constraints, optimizer_state=optimizer_state)
    plan.meta["shape_after"] = ModelShape.from_config(model.config).to_dict()
    return plan, optimizer_state
