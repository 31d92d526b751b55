"""One pruning step: score the current model, pick the lowest units, and hand the plan to surgery.

This is what both `prunetune prune` and every iteration of the loop call. Scoring never edits;
only `surgery.apply_plan` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from prunetune.models.shape import ModelShape
from prunetune.pruning.plan import Constraints, PruningPlan
from prunetune.pruning.select import plan_from_scores
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
    ptl_order: str = "rank"

    @property
    def removes_layers(self) -> int:
        return len(self.layer_ids) or self.layers


def decide(
    model,
    spec: StepSpec,
    calibration: list[dict],
    *,
    general: list[dict] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> PruningPlan:
    """Score what `spec` asks to remove and return the plan (the model is not edited)."""
    from prunetune.pruning import importance

    shape = ModelShape.from_config(model.config)
    mlp_scores = kv_scores = layer_scores = None
    if spec.mlp_neurons:
        mlp_scores = importance.score_mlp(
            model,
            spec.mlp_importance,
            calibration,
            general_batches=general,
            seed=seed,
            ptl_order=spec.ptl_order,
            progress=progress,
        )
    if spec.kv_groups:
        kv_scores = importance.score_kv_groups(
            model, spec.kv_importance, calibration, seed=seed, progress=progress
        )
    if spec.layers and not spec.layer_ids:
        layer_scores = importance.score_layers(model, spec.layer_importance, calibration, progress=progress)
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
    return plan_from_scores(
        mlp_scores=mlp_scores,
        mlp_per_layer=spec.mlp_neurons,
        kv_scores=kv_scores,
        kv_per_layer=spec.kv_groups,
        layer_scores=layer_scores,
        num_layers=spec.layers,
        layer_ids=spec.layer_ids,
        meta=meta,
    )


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
) -> tuple[PruningPlan, OptimizerState | None]:
    """Decide, validate, then cut. Validation of the AMOUNTS happens before any scoring work."""
    shape = ModelShape.from_config(model.config)
    dry = PruningPlan.amounts(
        shape, mlp=spec.mlp_neurons, kv=spec.kv_groups, layers=list(spec.layer_ids) or spec.layers
    )
    dry.validate(shape, constraints)
    plan = decide(model, spec, calibration, general=general, seed=seed, progress=progress)
    with torch.no_grad():
        optimizer_state = apply_plan(model, plan, constraints=constraints, optimizer_state=optimizer_state)
    plan.meta["shape_after"] = ModelShape.from_config(model.config).to_dict()
    return plan, optimizer_state
