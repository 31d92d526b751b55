"""Decoder-layer importance: one score per layer; lower = more redundant (remove first).

Hooks see a layer's input hidden states as its first positional argument or as the `hidden_states`
keyword (families differ), and its output as a tensor or a tuple whose first item is the hidden states.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prunetune.models import get_adapter
from prunetune.pruning.importance.calibration import (
    TokenMask,
    check_batches,
    mean_loss,
    progress_bar,
    scoring_pass,
)
from prunetune.pruning.importance.layerwise import layerwise_capable, run_forwards, scoring_device
from prunetune.pruning.importance.scorers import LAYER_SCORERS, Calibration


def layer_input(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def layer_output(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


@LAYER_SCORERS.register("block_influence")
@layerwise_capable
def score_block_influence(model, calib: Calibration) -> torch.Tensor:
    """Mean over real tokens of 1 - cos(h_in, h_out) per layer (ShortGPT's block influence)."""
    batches, progress = check_batches(calib.batches), calib.progress
    adapter = get_adapter(model)
    layers = adapter.layers(model)
    acc = torch.zeros(len(layers), device=scoring_device(model, calib.layerwise))
    mask = TokenMask()

    def make_hook(idx: int):
        def hook(module, args, kwargs, output):
            h_in, h_out = layer_input(args, kwargs), layer_output(output)
            width = h_in.shape[-1]
            cos = F.cosine_similarity(
                h_in.reshape(-1, width).float(), h_out.reshape(-1, width).float(), dim=-1
            )
            acc[idx] += mask.masked_sum((1.0 - cos)[:, None])[0]

        return hook

    with scoring_pass(model) as handles:
        for idx, layer in enumerate(layers):
            handles.append(layer.register_forward_hook(make_hook(idx), with_kwargs=True))
        run_forwards(model, batches, mask, layerwise=calib.layerwise, desc="scoring layers (block influence)",
                     progress=progress)
    tokens = sum(float(b["attention_mask"].sum()) for b in batches)
    return acc.cpu() / max(tokens, 1.0)


def _skip_hook(module, args, kwargs, output):
    """Make the layer an identity: hand its input hidden states on in place of its output."""
    h_in = layer_input(args, kwargs)
    return (h_in, *output[1:]) if isinstance(output, tuple) else h_in


@LAYER_SCORERS.register("skip_loss")
def score_skip_loss(model, calib: Calibration) -> torch.Tensor:
    """LM loss with the layer skipped minus the dense loss, token-weighted over the calibration set.

    Costs num_layers + 1 passes over the calibration text. A layer whose removal lowers the loss
    scores below zero and goes first.
    """
    batches, progress = check_batches(calib.batches), calib.progress
    adapter = get_adapter(model)
    layers = adapter.layers(model)
    mask = TokenMask()
    scores = torch.zeros(len(layers))
    with scoring_pass(model) as handles:
        base = mean_loss(model, batches, mask)
        for idx in progress_bar(list(range(len(layers))), "scoring layers (skip loss)", progress):
            handle = layers[idx].register_forward_hook(_skip_hook, with_kwargs=True)
            handles.append(handle)
            try:
                scores[idx] = mean_loss(model, batches, mask) - base
            finally:
                handle.remove()
                handles.remove(handle)
    return scores
