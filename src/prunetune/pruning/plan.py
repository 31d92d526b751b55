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
    meta: dict = field(default_factory=dict)
    hidden_channels: list[int] = field(default_factory=list)
    """Residual-stream channels (0..hidden_size-1) removed everywhere: embeddings, projections, norms, lm_head."""

    @classmethod
    def amounts(
        cls, shape: ModelShape, *, mlp: int = 0, kv: int = 0, layers: list[int] | int = 0, hidden: int = 0
    ) -> PruningPlan:
        """A plan with these counts and placeholder indices: validating it checks the amounts alone."""
        per_layer = range(shape.num_hidden_layers)
        return cls(
            mlp_neurons={i: list(range(mlp)) for i in per_layer} if mlp else {},
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

    def is_empty(self) -> bool:
        return not (self.mlp_per_layer or self.kv_per_layer or self.layers or self.hidden_channels)

    def shape_after(self, shape: ModelShape) -> ModelShape:
        return shape.after(
            mlp_removed=self.mlp_per_layer,
            kv_groups_removed=self.kv_per_layer,
            layers_removed=len(self.layers),
            hidden_removed=len(self.hidden_channels),
        )

    # ---- validation -----------------------------------------------------------------------
    def validate(self, shape: ModelShape, constraints: Constraints = Constraints()) -> ModelShape:
        """Check every constraint against `shape`; return the shape after. Raises UserError."""
        L = shape.num_hidden_layers
        self._check_uniform("mlp_neurons", self.mlp_neurons, L, shape.intermediate_size, "MLP neurons")
        self._check_uniform("kv_groups", self.kv_groups, L, shape.num_key_value_heads, "KV groups")
        if len(set(self.layers)) != len(self.layers):
            raise UserError("plan.layers: duplicate layer ids")
        bad = [i for i in self.layers if not 0 <= i < L]
        if bad:
            raise UserError(f"plan.layers: layer id {bad[0]} out of range (model has {L} layers: 0..{L - 1})")
        if len(self.layers) >= L:
            raise UserError(f"plan.layers: removing {len(self.layers)} of {L} layers leaves none")
        self._check_hidden(shape.hidden_size, constraints)
        after = self.shape_after(shape)
        if after.intermediate_size % constraints.round_to:
            raise UserError(
                f"MLP width after pruning ({after.intermediate_size}) is not a multiple of round_to={constraints.round_to}"
            )
        tp = constraints.tensor_parallel
        for name, value in (
            ("num_attention_heads", after.num_attention_heads),
            ("num_key_value_heads", after.num_key_value_heads),
            ("intermediate_size", after.intermediate_size),
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
        key: str, per_layer: dict[int, list[int]], num_layers: int, width: int, what: str
    ) -> None:
        if not per_layer:
            return
        if sorted(per_layer) != list(range(num_layers)):
            raise UserError(f"plan.{key}: must name every layer 0..{num_layers - 1} (uniform pruning)")
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
        d["layers"] = sorted(self.layers)
        d["hidden_channels"] = sorted(self.hidden_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PruningPlan:
        return cls(
            mlp_neurons={int(k): list(v) for k, v in d.get("mlp_neurons", {}).items()},
            kv_groups={int(k): list(v) for k, v in d.get("kv_groups", {}).items()},
            layers=list(d.get("layers", [])),
            meta=dict(d.get("meta", {})),
            hidden_channels=list(d.get("hidden_channels", [])),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> PruningPlan:
        return cls.from_dict(json.loads(text))
