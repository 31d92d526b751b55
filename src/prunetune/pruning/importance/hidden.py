"""Hidden-channel importance: one score per residual-stream channel (higher = more important = kept).

`activation` follows Minitron (Muralidharan et al., 2024): a channel matters as much as it is large where
the stream is read, the outputs of the norms that feed projections (every layer's pre-norms and the final
norm), as the root mean square over real calibration tokens, summed over those norms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from prunetune.models import get_adapter
from prunetune.models.shape import ModelShape
from prunetune.pruning.importance.calibration import (
    TokenMask,
    check_batches,
    forward,
    model_device,
    progress_bar,
    scoring_pass,
)
from prunetune.pruning.importance.scorers import HIDDEN_SCORERS, Calibration


@dataclass
class HiddenActivationOptions:
    site: Literal["norm_output", "residual"] = "norm_output"
    """Where the channel's size is measured: the pre-norms' outputs (Minitron) | their inputs (the residual
    stream itself, where a few channels carry very large values)."""


@HIDDEN_SCORERS.register("activation", options=HiddenActivationOptions)
def score_activation(model, calib: Calibration, *, site: str = "norm_output") -> torch.Tensor:
    """Sum over pre-norms and the final norm of sqrt(mean over real tokens of the channel's value squared)."""
    batches, progress = check_batches(calib.batches), calib.progress
    adapter = get_adapter(model)
    H = ModelShape.from_config(model.config).hidden_size
    norms = [n for layer in adapter.layers(model) for n in adapter.layer_norms(layer)[0]]
    norms.append(adapter.final_norm_module(model))
    sq = torch.zeros(len(norms), H, device=model_device(model))
    mask = TokenMask()
    tokens = 0.0

    def make_hook(idx: int):
        def hook(module, args, output):
            x = (args[0] if site == "residual" else output).reshape(-1, H).float()
            sq[idx] += mask.masked_sum(x * x)

        return hook

    with scoring_pass(model) as handles:
        for idx, norm in enumerate(norms):
            handles.append(norm.register_forward_hook(make_hook(idx)))
        for batch in progress_bar(batches, "scoring hidden channels (activation)", progress):
            forward(model, batch, mask)
            tokens += float(batch["attention_mask"].sum())
    return (sq.cpu() / max(tokens, 1.0)).sqrt().sum(dim=0)


@HIDDEN_SCORERS.register("random")
def score_random(model, calib: Calibration) -> torch.Tensor:
    """Uniform random scores, seeded (the control every scorer must beat)."""
    H = ModelShape.from_config(model.config).hidden_size
    return torch.rand(H, generator=torch.Generator().manual_seed(calib.seed))
