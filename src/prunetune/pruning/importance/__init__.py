"""Importance scores: decide what to remove, never edit the model (higher score = more important = keep).

Scores come from temporary hooks over calibration batches (calibration.py); hooks are removed,
`model.training`, `requires_grad` and any existing gradients restored afterwards, even on errors.
Scorers live in mlp.py, kv.py, layers.py, experts.py and hidden.py and register themselves (scorers.py); `prunetune ls -v`
lists them with their options. `layerwise=True` runs the forwards one decoder layer at a time (layerwise.py).
"""

from prunetune.pruning.importance import experts, hidden, kv, layers, mlp  # noqa: F401  (registers the scorers)
from prunetune.pruning.importance.calibration import calibration_batches, calibration_inputs
from prunetune.pruning.importance.layerwise import Layerwise
from prunetune.pruning.importance.scorers import (
    EXPERT_NEURON_SCORERS,
    EXPERT_SCORERS,
    HIDDEN_SCORERS,
    KV_SCORERS,
    LAYER_SCORERS,
    MLP_SCORERS,
    Calibration,
    check_options,
    score_expert_neurons,
    score_experts,
    score_hidden,
    score_kv_groups,
    score_layers,
    score_mlp,
)

__all__ = [
    "EXPERT_NEURON_SCORERS",
    "EXPERT_SCORERS",
    "score_expert_neurons",
    "score_experts",
    "HIDDEN_SCORERS",
    "KV_SCORERS",
    "LAYER_SCORERS",
    "Layerwise",
    "MLP_SCORERS",
    "Calibration",
    "calibration_batches",
    "calibration_inputs",
    "check_options",
    "score_hidden",
    "score_kv_groups",
    "score_layers",
    "score_mlp",
]
