"""The scorer registries and the entry points the rest calls: score_mlp, score_kv_groups, score_layers, score_hidden.

A scorer is a function `(model, calib: Calibration, **options) -> Tensor` registered with
`@MLP_SCORERS.register(name, options=OptionsDataclass)` (or KV_SCORERS / LAYER_SCORERS / HIDDEN_SCORERS); its options
are checked by prunetune.config before it runs, so a recipe's `prune.mlp_options` fails at validation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from prunetune.config import build
from prunetune.errors import UserError
from prunetune.pruning.importance.layerwise import Layerwise, as_layerwise, check_layerwise
from prunetune.registry import Registry

MLP_SCORERS = Registry("MLP scorer")
"""[num_layers, intermediate_size] scores; higher = more important = kept."""
KV_SCORERS = Registry("KV-group scorer")
"""[num_layers, num_key_value_heads] scores (a KV head with its query heads)."""
LAYER_SCORERS = Registry("layer scorer")
"""[num_layers] scores; lower = more redundant = removed first."""
EXPERT_SCORERS = Registry("expert scorer")
"""[num MoE layers, num_experts] scores, rows in ModelShape.moe_layers order; higher = kept."""
EXPERT_NEURON_SCORERS = Registry("expert-neuron scorer")
"""(experts [num MoE layers, num_experts * expert width], shared [num MoE layers, shared width] or None)."""
HIDDEN_SCORERS = Registry("hidden-channel scorer")
"""[hidden_size] scores, one per residual-stream channel; higher = kept."""


@dataclass
class Calibration:
    """What every scorer may read besides the model."""

    batches: list[dict]
    general_batches: list[dict] | None = None
    seed: int = 0
    progress: bool = True
    layerwise: Layerwise | None = None
    """Run the forwards one decoder layer at a time (layerwise.py); None: the whole model per batch."""


def check_options(registry: Registry, method: str, options: dict | None, key: str = "options") -> dict:
    """`options` validated against the scorer's options dataclass (defaults filled in); errors name `key`."""
    entry = registry.entry(method)
    if entry.options is None:
        if options:
            raise UserError(f"{key}: {registry.kind} '{method}' takes no options, got {', '.join(options)}")
        return {}
    return asdict(build(entry.options, options or {}, key))


def _score(registry, model, method, batches, options, layerwise=None, **calib) -> torch.Tensor:
    opts = check_options(registry, method, options)
    layerwise = as_layerwise(layerwise)
    if layerwise is not None:
        check_layerwise(registry, method)
    return registry.get(method)(model, Calibration(batches, layerwise=layerwise, **calib), **opts)


def score_mlp(model, method, batches, *, general_batches=None, seed=0, progress=True, options=None, layerwise=None):
    """Score every MLP intermediate neuron: [num_layers, intermediate_size] float32 on CPU.

    `layerwise` (True or a `Layerwise`): bring one decoder layer at a time onto the compute device."""
    return _score(MLP_SCORERS, model, method, batches, options, layerwise, general_batches=general_batches, seed=seed,
                  progress=progress)


def score_kv_groups(model, method, batches, *, seed=0, progress=True, options=None, layerwise=None):
    """Score every KV group: [num_layers, num_key_value_heads] float32 on CPU."""
    return _score(KV_SCORERS, model, method, batches, options, layerwise, seed=seed, progress=progress)


def score_layers(model, method, batches, *, progress=True, options=None, layerwise=None):
    """Score every decoder layer: [num_layers] float32 on CPU; lower = more redundant."""
    return _score(LAYER_SCORERS, model, method, batches, options, layerwise, progress=progress)


def score_experts(model, method, batches, *, seed=0, progress=True, options=None):
    """Score every routed expert of every MoE layer: [num MoE layers, num_experts] float32 on CPU."""
    return _score(EXPERT_SCORERS, model, method, batches, options, seed=seed, progress=progress)


def score_expert_neurons(model, method, batches, *, seed=0, progress=True, options=None):
    """Score every expert neuron and shared-expert neuron (see EXPERT_NEURON_SCORERS)."""
    return _score(EXPERT_NEURON_SCORERS, model, method, batches, options, seed=seed, progress=progress)



def score_hidden(model, method, batches, *, seed=0, progress=True, options=None):
    """Score every residual-stream channel: [hidden_size] float32 on CPU."""
    return _score(HIDDEN_SCORERS, model, method, batches, options, seed=seed, progress=progress)
