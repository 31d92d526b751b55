"""The PruningPlan: which MLP neurons, KV groups, layers and hidden channels to remove, validated before any weight is cut.

Indices refer to the model as it is when the plan is applied (before this plan's layer removal).
The same number of neurons / groups is removed from every layer, so one intermediate_size and one
num_key_value_heads remain and the result loads with stock `from_pretrained`. Hidden channels are
residual-stream channels, the same set removed from every place that holds them (one hidden_size).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from prunetune.errors import UserError
from prunetune.models.shape import ModelShape
from prunetune.pruning.plan_moe import moe_widths, validate_moe


@dataclass(frozen=True)
class Constraints:
    round_to: int = 1
    """Remaining intermediate_size (and hidden_size, when channels are removed) must be a multiple of
    this (hardware-friendly widths, e.g. 64)."""
    tensor_parallel: int = 1
    """Remaining attention heads, KV heads and MLP width must divide evenly across this many ranks."""


@dataclass
class PruningPlan:
    mlp_neurons: dict[int, list[int]] = field(default_factory=dict)
    kv_groups: dict[int, list[int]] = field(default_factory=dict)
    layers: list[int] = field(default_factory=list)
    experts: dict[int, list[int]] = field(default_factory=dict)
    """Routed experts removed from every sparse layer (keyed by sparse layer; router rows go with them)."""
    expert_neurons: dict[int, list[int]] = field(default_factory=dict)
    """Per sparse layer, flat indices expert * moe_intermediate_size + neuron, the same count from every
    expert (numbered before this plan's expert removal), so one expert width remains."""
    shared_expert_neurons: dict[int, list[int]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    hidden_channels: list[int] = field(default_factory=list)
    """Residual-stream channels (0..hidden_size-1) removed everywhere: embeddings, projections, norms, lm_head."""

    @classmethod
    def amounts(
        cls, shape: ModelShape, *, mlp: int = 0, kv: int = 0, layers: list[int] | int = 0,
        experts: int = 0, expert_neurons: int = 0, shared: int = 0, hidden: int = 0,
    ) -> PruningPlan:
        """A plan with these counts and placeholder indices: validating it checks the amounts alone."""
        per_layer = range(shape.num_hidden_layers)
        if (experts or expert_neurons or shared) and not shape.moe_layers:
            raise UserError(f"--experts / --expert-neurons (experts, expert_neurons): '{shape.model_type}' "
                            "is a dense model with no MoE layers")
        E, W, sparse = shape.num_experts, shape.moe_intermediate_size, shape.moe_layers
        return cls(
            experts={i: list(range(experts)) for i in sparse} if experts else {},
            expert_neurons={i: [e * W + n for e in range(E) for n in range(expert_neurons)] for i in sparse}
            if expert_neurons else {},
            shared_expert_neurons={i: list(range(shared)) for i in sparse} if shared else {},
            mlp_neurons={i: list(range(mlp)) for i in shape.dense_layers} if mlp else {},
            kv_groups={i: list(range(kv)) for i in per_layer} if kv else {},
            layers=list(layers) if isinstance(layers, list) else list(range(layers)),
            hidden_channels=list(range(hidden)),
        )

    # ---- counts ---------------------------------------------------------------------------
    @property
    def mlp_per_layer(self) -> int:
        return len(next(iter(self.mlp_neurons.values()))) if self.mlp_neurons else 0

    @property
    def kv_per_layer(self) -> int:
        return len(next(iter(self.kv_groups.values()))) if self.kv_groups else 0

    @property
    def experts_per_layer(self) -> int:
        return len(next(iter(self.experts.values()))) if self.experts else 0

    def expert_neurons_per_expert(self, shape: ModelShape) -> int:
        return len(next(iter(self.expert_neurons.values()))) // shape.num_experts if self.expert_neurons else 0

    @property
    def shared_per_layer(self) -> int:
        return len(next(iter(self.shared_expert_neurons.values()))) if self.shared_expert_neurons else 0

    def is_empty(self) -> bool:
        return not (self.mlp_per_layer or self.kv_per_layer or self.layers or self.experts
                    or self.expert_neurons or self.shared_expert_neurons or self.hidden_channels)

    def shape_after(self, shape: ModelShape) -> ModelShape:
        return shape.after(
            mlp_removed=self.mlp_per_layer,
            kv_groups_removed=self.kv_per_layer,
            layers_removed=sorted(self.layers),
            experts_removed=self.experts_per_layer,
            expert_neurons_removed=self.expert_neurons_per_expert(shape),
            shared_removed=self.shared_per_layer,
            hidden_removed=len(self.hidden_channels),
        )

    # ---- validation -----------------------------------------------------------------------
    def validate(self, shape: ModelShape, constraints: Constraints = Constraints()) -> ModelShape:
        """Check every constraint against `shape`; return the shape after. Raises UserError."""
        L = shape.num_hidden_layers
        if self.mlp_neurons and not shape.dense_layers:
            raise UserError(f"plan.mlp_neurons: '{shape.model_type}' has no dense MLP layers; prune expert_neurons")
        self._check_uniform("mlp_neurons", self.mlp_neurons, shape.dense_layers, shape.intermediate_size,
                            "MLP neurons", "dense-MLP layer" if shape.moe_layers else "layer")
        if self.kv_groups and shape.qk_norm_full:
            raise UserError(f"plan.kv_groups: '{shape.model_type}' normalises q/k over all heads; KV groups "
                            "cannot be removed exactly")
        self._check_uniform("kv_groups", self.kv_groups, range(L), shape.num_key_value_heads, "KV groups")
        if len(set(self.layers)) != len(self.layers):
            raise UserError("plan.layers: duplicate layer ids")
        bad = [i for i in self.layers if not 0 <= i < L]
        if bad:
            raise UserError(f"plan.layers: layer id {bad[0]} out of range (model has {L} layers: 0..{L - 1})")
        if len(self.layers) >= L:
            raise UserError(f"plan.layers: removing {len(self.layers)} of {L} layers leaves none")
        validate_moe(self, shape)
        self._check_hidden(shape.hidden_size, constraints)
        if self.hidden_channels and shape.moe_layers:
            raise UserError(f"plan.hidden_channels: hidden-size pruning of MoE models ('{shape.model_type}') is "
                            "not supported yet (the fused expert tensors and routers would need cutting too)")
        after = self.shape_after(shape)
        if after.heads_divide_hidden and after.hidden_size % after.num_attention_heads:
            raise UserError(
                f"plan.{'hidden_channels' if self.hidden_channels else 'kv_groups'}: {after.num_attention_heads} "
                f"query heads left do not divide hidden_size="
                f"{after.hidden_size}, which {shape.model_type} configs require (transformers would reject the checkpoint)"
            )
        moe_widths(shape, after, constraints)
        if shape.dense_layers and after.intermediate_size % constraints.round_to:
            raise UserError(
                f"MLP width after pruning ({after.intermediate_size}) is not a multiple of round_to={constraints.round_to}"
            )
        tp = constraints.tensor_parallel
        for name, value in (
            ("num_attention_heads", after.num_attention_heads),
            ("num_key_value_heads", after.num_key_value_heads),
            ("intermediate_size", after.intermediate_size if shape.dense_layers else 0),
        ):
            if value % tp:
                raise UserError(f"{name} after pruning ({value}) is not divisible by tensor_parallel={tp}")
        return after

    def _check_hidden(self, width: int, constraints: Constraints) -> None:
        """Hidden channels: distinct, in range, some left, and the width left a multiple of round_to.

        head_dim stays (surgery writes it to the config), so no head or rotary size depends on the hidden
        size in the supported families; tensor parallelism splits heads and MLP width, never the hidden size.
        """
        idx = self.hidden_channels
        if not idx:
            return
        if len(set(idx)) != len(idx):
            raise UserError("plan.hidden_channels: duplicate channel ids")
        if not (0 <= min(idx) and max(idx) < width):
            raise UserError(f"plan.hidden_channels: channel id out of range 0..{width - 1}")
        if len(idx) >= width:
            raise UserError(f"plan.hidden_channels: removing {len(idx)} of {width} hidden channels leaves none")
        if (width - len(idx)) % constraints.round_to:
            raise UserError(
                f"hidden_size after pruning ({width - len(idx)}) is not a multiple of round_to={constraints.round_to}"
            )

    @staticmethod
    def _check_uniform(
        key: str, per_layer: dict[int, list[int]], layers, width: int, what: str, kind: str = "layer"
    ) -> None:
        if not per_layer:
            return
        layers = list(layers)
        if sorted(per_layer) != layers:
            where = f"0..{len(layers) - 1}" if layers == list(range(len(layers))) else str(layers)
            raise UserError(f"plan.{key}: must name every {kind} {where} (uniform pruning)")
        counts = {len(v) for v in per_layer.values()}
        if len(counts) != 1:
            raise UserError(
                f"plan.{key}: the same number of {what} must be removed from every layer, got {sorted(counts)}"
            )
        n = counts.pop()
        if n >= width:
            raise UserError(f"plan.{key}: removing {n} of {width} {what} per layer leaves none")
        for layer, idx in per_layer.items():
            if len(set(idx)) != len(idx):
                raise UserError(f"plan.{key}[{layer}]: duplicate indices")
            if idx and not (0 <= min(idx) and max(idx) < width):
                raise UserError(f"plan.{key}[{layer}]: index out of range 0..{width - 1}")

    # ---- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["mlp_neurons"] = {str(k): sorted(v) for k, v in self.mlp_neurons.items()}
        d["kv_groups"] = {str(k): sorted(v) for k, v in self.kv_groups.items()}
        for key in ("experts", "expert_neurons", "shared_expert_neurons"):
            d[key] = {str(k): sorted(v) for k, v in getattr(self, key).items()}
        d["layers"] = sorted(self.layers)
        d["hidden_channels"] = sorted(self.hidden_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PruningPlan:
        return cls(
            mlp_neurons={int(k): list(v) for k, v in d.get("mlp_neurons", {}).items()},
            kv_groups={int(k): list(v) for k, v in d.get("kv_groups", {}).items()},
            layers=list(d.get("layers", [])),
            experts={int(k): list(v) for k, v in d.get("experts", {}).items()},
            expert_neurons={int(k): list(v) for k, v in d.get("expert_neurons", {}).items()},
            shared_expert_neurons={int(k): list(v) for k, v in d.get("shared_expert_neurons", {}).items()},
            meta=dict(d.get("meta", {})),
            hidden_channels=list(d.get("hidden_channels", [])),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> PruningPlan:
        return cls.from_dict(json.loads(text))
