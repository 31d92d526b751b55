"""Importance scores: decide what to remove, never edit the model (higher score = more important = keep).

Scores come from temporary hooks over calibration batches (see calibration.py); hooks are removed,
`model.training`, `requires_grad` and any existing gradients restored afterwards, even on errors.

MLP scorers ([num_layers, intermediate_size]):
  ptl         the paper's criterion: last-token signed activations at gate output, up output and
              down_proj input; neurons in the bottom-N on EVERY reasoning sample (rows of `batches`)
              minus those in the top-N on EVERY general-text sample (rows of `general_batches`),
              united over the three points, score lowest. N = `ptl_top_n`: a fraction of the width
              (default 0.85, the reference run's 16000 of Qwen2.5-7B's 18944) or a neuron count; smaller
              N gives fewer candidates. Candidates are ordered by the `activation` score ("rank") or
              by index like the reference code ("index"); all other neurons follow by `activation`.
  activation  mean |act(gate) * up| over real tokens x ||down_proj column||
  taylor      |sum of w * dL/dw| over the neuron's gate/up rows and down_proj column (LM loss)
  magnitude   L2 norm of the neuron's weights
  random      uniform, seeded
KV-group scorers ([num_layers, num_key_value_heads]): activation (per-head output norm through o_proj,
averaged over tokens, summed over the group's query heads), taylor (q/k/v rows and o_proj columns).
Layer scorers ([num_layers], lower = more redundant): block_influence (mean 1 - cos(h_in, h_out)),
skip_loss (LM loss increase when the layer is skipped).
"""

from __future__ import annotations

import torch

from prunetune.errors import UserError, did_you_mean
from prunetune.pruning.importance import kv, layers, mlp
from prunetune.pruning.importance.calibration import calibration_batches, check_batches

MLP_SCORERS = ("ptl", "activation", "taylor", "magnitude", "random")
KV_SCORERS = ("activation", "taylor")
LAYER_SCORERS = ("block_influence", "skip_loss")
PTL_ORDERS = ("rank", "index")


def _check_method(method: str, choices: tuple[str, ...], what: str) -> None:
    if method not in choices:
        raise UserError(
            f"unknown {what} importance '{method}'{did_you_mean(method, choices)}; choose from {', '.join(choices)}"
        )


def score_mlp(
    model,
    method: str,
    batches: list[dict],
    *,
    general_batches: list[dict] | None = None,
    seed: int = 0,
    ptl_order: str = "rank",
    ptl_top_n: int | float = 0.85,
    progress: bool = True,
) -> torch.Tensor:
    """Score every MLP intermediate neuron: [num_layers, intermediate_size] float32 on CPU."""
    _check_method(method, MLP_SCORERS, "MLP")
    if method == "random":
        return mlp.score_random(model, seed=seed)
    if method == "magnitude":
        return mlp.score_magnitude(model)
    batches = check_batches(batches)
    if method == "activation":
        return mlp.score_activation(model, batches, progress=progress)
    if method == "taylor":
        return mlp.score_taylor(model, batches, progress=progress)
    if ptl_order not in PTL_ORDERS:
        raise UserError(
            f"unknown ptl order '{ptl_order}'{did_you_mean(ptl_order, PTL_ORDERS)}; choose from {', '.join(PTL_ORDERS)}"
        )
    if (
        isinstance(ptl_top_n, bool)
        or not isinstance(ptl_top_n, int | float)
        or ptl_top_n <= 0
        or (isinstance(ptl_top_n, float) and ptl_top_n > 1)
    ):
        raise UserError(
            f"ptl_top_n must be a fraction in (0, 1] or a positive neuron count, got {ptl_top_n!r}"
        )
    return mlp.score_ptl(
        model, batches, general_batches=general_batches, top_n=ptl_top_n, order=ptl_order, progress=progress
    )


def score_kv_groups(
    model, method: str, batches: list[dict], *, seed: int = 0, progress: bool = True
) -> torch.Tensor:
    """Score every KV group (a KV head with its query heads): [num_layers, num_key_value_heads] float32 on CPU.

    `seed` is accepted for symmetry with score_mlp; both KV scorers are deterministic.
    """
    _check_method(method, KV_SCORERS, "KV-group")
    batches = check_batches(batches)
    if method == "activation":
        return kv.score_activation(model, batches, progress=progress)
    return kv.score_taylor(model, batches, progress=progress)


def score_layers(model, method: str, batches: list[dict], *, progress: bool = True) -> torch.Tensor:
    """Score every decoder layer: [num_layers] float32 on CPU; lower = more redundant."""
    _check_method(method, LAYER_SCORERS, "layer")
    batches = check_batches(batches)
    if method == "block_influence":
        return layers.score_block_influence(model, batches, progress=progress)
    return layers.score_skip_loss(model, batches, progress=progress)


__all__ = [
    "KV_SCORERS",
    "LAYER_SCORERS",
    "MLP_SCORERS",
    "calibration_batches",
    "score_kv_groups",
    "score_layers",
    "score_mlp",
]
