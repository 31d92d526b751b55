"""MLP neuron importance: one score per intermediate neuron (gate/up row pair and down_proj column).

Higher = more important. The forward-only scorers read act(gate) * up at the down_proj input and, for
`ptl`, the gate and up outputs at each sample's last token; `taylor` backs the LM loss into the
neuron's weights (taylor.py). All statistics are [num_layers, intermediate_size] fp32 accumulators.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch

from prunetune.config import bounded
from prunetune.errors import UserError
from prunetune.models import get_adapter
from prunetune.models.shape import ModelShape
from prunetune.pruning.importance.calibration import (
    TokenMask,
    check_batches,
    scoring_pass,
)
from prunetune.pruning.importance.layerwise import Layerwise, layerwise_capable, run_forwards, scoring_device
from prunetune.pruning.importance.scorers import MLP_SCORERS, Calibration
from prunetune.pruning.importance.taylor import TaylorOptions, taylor_scores

GATE, UP, DOWN = 0, 1, 2
"""The three read-out points of the paper's criterion: gate output, up output, down_proj input."""


def mlp_in_parts(adapter, layer, width: int) -> list[tuple[torch.nn.Linear, int, int]]:
    """(linear, first row, point) for the gate block and the up block, in that order, fused or not."""
    parts = []
    for rb in adapter.mlp_in_blocks(layer):
        for i, name in enumerate(rb.blocks):
            assert name == "mlp", f"unexpected MLP row block {name!r}"
            parts.append((rb.linear, i * width, len(parts)))
    assert len(parts) == 2, "an MLP needs a gate block and an up block"
    return parts


class MlpActivationStats:
    """Forward hooks collecting, per layer, the masked sum of |act(gate) * up| over real tokens and, for
    ptl, the per-sample bottom-N / top-N membership of last-token activations at the three points.

    down_proj's column norms are read in its hook, while its weight is on the compute device (layer-wise
    scoring from disk holds no other copy)."""

    def __init__(self, model, *, top_n: int | None = None, layerwise: Layerwise | None = None):
        self.adapter = get_adapter(model)
        shape = ModelShape.from_config(model.config)
        self.width, n_layers = shape.intermediate_size, shape.num_hidden_layers
        self.mask = TokenMask()
        self.layerwise = layerwise
        device = scoring_device(model, layerwise)  # accumulate where the activations are; one copy to CPU at the end
        self.abs_sum = torch.zeros(n_layers, self.width, device=device)
        self.down_norms: list[torch.Tensor | None] = [None] * n_layers
        self.tokens = 0.0
        self.top_n = top_n
        self.general = False
        if top_n is not None:
            self.candidate = torch.ones(3, n_layers, self.width, dtype=torch.bool, device=device)
            self.protected = torch.ones(3, n_layers, self.width, dtype=torch.bool, device=device)
            self.general_samples = 0

    def register(self, model, handles: list) -> None:
        for idx, layer in enumerate(self.adapter.layers(model)):
            handles.append(self.adapter.mlp_out_linear(layer).register_forward_pre_hook(self._down_hook(idx)))
            if self.top_n is not None:
                for linear, row, point in mlp_in_parts(self.adapter, layer, self.width):
                    handles.append(linear.register_forward_hook(self._in_hook(idx, row, point)))

    def _down_hook(self, idx: int):
        def hook(module, args):
            flat = args[0].reshape(-1, self.width)
            if self.down_norms[idx] is None:
                self.down_norms[idx] = module.weight.detach().float().norm(dim=0).cpu()
            if not self.general:
                self.abs_sum[idx] += self.mask.masked_sum(flat.abs())
            if self.top_n is not None:
                self._update_sets(idx, DOWN, flat[self.mask.last])

        return hook

    def _in_hook(self, idx: int, row: int, point: int):
        def hook(module, args, output):
            last = output.reshape(-1, output.shape[-1])[self.mask.last]
            self._update_sets(idx, point, last[:, row : row + self.width])

        return hook

    def _update_sets(self, idx: int, point: int, values: torch.Tensor) -> None:
        """Intersect this batch's per-sample bottom-N (reasoning) or top-N (general) sets into the running ones."""
        values = values.float()
        members = torch.zeros_like(values, dtype=torch.bool)
        members.scatter_(1, values.topk(self.top_n, dim=1, largest=self.general).indices, True)
        target = self.protected if self.general else self.candidate
        target[point, idx] &= members.all(dim=0)

    def run(self, model, batches: list[dict], *, general: bool, desc: str, progress: bool) -> None:
        self.general = general
        with scoring_pass(model) as handles:
            self.register(model, handles)
            run_forwards(model, batches, self.mask, layerwise=self.layerwise, desc=desc, progress=progress)
        for batch in batches:
            if general:
                self.general_samples += batch["input_ids"].shape[0]
            else:
                self.tokens += float(batch["attention_mask"].sum())

    def activation_scores(self) -> torch.Tensor:
        assert all(n is not None for n in self.down_norms), "activation_scores before a pass"
        return self.abs_sum.cpu() / max(self.tokens, 1.0) * torch.stack(self.down_norms)


@MLP_SCORERS.register("activation")
@layerwise_capable
def score_activation(model, calib: Calibration) -> torch.Tensor:
    """Mean |act(gate) * up| over real tokens times ||down_proj column||: the neuron's typical output size."""
    stats = MlpActivationStats(model, layerwise=calib.layerwise)
    batches = check_batches(calib.batches)
    stats.run(model, batches, general=False, desc="scoring MLP (activation)", progress=calib.progress)
    return stats.activation_scores()


@dataclass
class PTLOptions:
    order: Literal["rank", "index"] = "rank"
    """Order of the deletion candidates: by activation (rank) or by index like the reference code (index)."""
    top_n: float = bounded(0.85, gt=0.0)
    """N of the bottom-N / top-N sets: a fraction of the width in (0, 1] (the reference run's 16000 of
    Qwen2.5-7B's 18944 is 0.85) or a whole neuron count above 1; smaller N gives fewer candidates."""

    def __post_init__(self):
        if self.top_n > 1 and not float(self.top_n).is_integer():
            raise UserError(f"options.top_n: a fraction in (0, 1] or a whole neuron count, got {self.top_n}")


def resolve_top_n(top_n: float, width: int) -> int:
    """`top_n` as a count: up to 1 it is a fraction of the width, above 1 a neuron count."""
    if top_n <= 1:
        return max(1, min(width, round(top_n * width)))
    return max(1, min(width, int(top_n)))


def ptl_deletion_set(candidate: torch.Tensor, protected: torch.Tensor) -> torch.Tensor:
    """The paper's deletion candidates per layer: union over the three points of (candidates - protected).

    `candidate` / `protected`: [3, num_layers, width] bool. Returns [num_layers, width] bool.
    """
    return (candidate & ~protected).any(dim=0)


def ptl_scores(deletable: torch.Tensor, fallback: torch.Tensor, order: str) -> torch.Tensor:
    """Turn the deletion set into scores: every deletable neuron scores below every other one.

    Deletable neurons are ordered among themselves by `fallback` ("rank") or by index, lowest index
    first ("index", the reference code's `sorted(...)[:k]`); the rest keep `fallback` (>= 0), so asking
    for more neurons than the set holds continues with the least active of the others.
    """
    assert order in ("rank", "index")
    fallback = fallback.float().clamp_min(0)
    scores = fallback.clone()
    if order == "rank":
        below = fallback - fallback.amax(dim=1, keepdim=True) - 1.0
    else:
        width = fallback.shape[1]
        below = (torch.arange(width, dtype=torch.float32) - width).expand_as(fallback)
    scores[deletable] = below[deletable]
    return scores


@MLP_SCORERS.register("ptl", options=PTLOptions)
@layerwise_capable
def score_ptl(model, calib: Calibration, *, top_n: float = 0.85, order: str = "rank") -> torch.Tensor:
    """The paper's criterion: last-token activations in the bottom-N on every reasoning sample, minus general text's top-N.

    Signed activations at the gate output, the up output and the down_proj input; the union over the
    three points scores lowest.

    Each row of `batches` is one reasoning sample, each row of `general_batches` one general-text sample
    (None: nothing is protected). The fallback and the "rank" order use the `activation` score
    measured on the reasoning batches.
    """
    width = ModelShape.from_config(model.config).intermediate_size
    stats = MlpActivationStats(model, top_n=resolve_top_n(top_n, width), layerwise=calib.layerwise)
    batches, progress = check_batches(calib.batches), calib.progress
    stats.run(model, batches, general=False, desc="scoring MLP (ptl, reasoning)", progress=progress)
    if calib.general_batches:
        general = check_batches(calib.general_batches, "general-text batches")
        stats.run(model, general, general=True, desc="scoring MLP (ptl, general)", progress=progress)
    else:
        stats.protected.zero_()
    deletable = ptl_deletion_set(stats.candidate.cpu(), stats.protected.cpu())
    return ptl_scores(deletable, stats.activation_scores(), order)


def neuron_params(model) -> list[tuple[int, list[tuple[torch.Tensor, str, int]]]]:
    """Per layer, (tensor, kind, first row) for each piece holding per-neuron weights.

    kind "rows": rows [first, first + width) are neurons (gate/up weights and biases);
    kind "cols": columns are neurons (down_proj weight).
    """
    adapter = get_adapter(model)
    width = ModelShape.from_config(model.config).intermediate_size
    out = []
    for idx, layer in enumerate(adapter.layers(model)):
        pieces = []
        for linear, row, _ in mlp_in_parts(adapter, layer, width):
            pieces.append((linear.weight, "rows", row))
            if linear.bias is not None:
                pieces.append((linear.bias, "rows", row))
        pieces.append((adapter.mlp_out_linear(layer).weight, "cols", 0))
        out.append((idx, pieces))
    return out


def _per_neuron(t: torch.Tensor, kind: str, row: int, width: int) -> torch.Tensor:
    """Sum a per-weight quantity `t` (same shape as the piece) into one value per neuron."""
    if kind == "cols":
        return t.sum(dim=0)
    t = t[row : row + width]
    return t.sum(dim=1) if t.dim() == 2 else t


@MLP_SCORERS.register("magnitude")
@layerwise_capable
def score_magnitude(model, calib: Calibration) -> torch.Tensor:
    """L2 norm of all the neuron's weights (gate and up rows, their biases, the down_proj column)."""
    width = ModelShape.from_config(model.config).intermediate_size
    layers = neuron_params(model)
    sq = torch.zeros(len(layers), width)
    with torch.no_grad():
        for idx, pieces in layers:
            for t, kind, row in pieces:
                sq[idx] += _per_neuron(t.detach().float().square(), kind, row, width).cpu()
    return sq.sqrt()


@MLP_SCORERS.register("taylor", options=TaylorOptions)
def score_taylor(
    model, calib: Calibration, *, per: str = "sample", reduce: str = "element", order: str = "first"
) -> torch.Tensor:
    """Sum over the neuron's gate/up rows, their biases and its down_proj column of |w * dL/dw| (LM loss),
    each sample's gradient on its own by default: how much the loss leans on each of the neuron's weights.

    `reduce=unit, per=calibration` is the earlier formula, |sum of w * dL/dw| over the whole calibration
    set: the first-order loss change of zeroing the neuron, whose signed terms cancel near an optimum.
    """
    width = ModelShape.from_config(model.config).intermediate_size
    layers = [
        (idx, [(t, partial(_per_neuron, kind=kind, row=row, width=width)) for t, kind, row in pieces])
        for idx, pieces in neuron_params(model)
    ]
    opts = TaylorOptions(per=per, reduce=reduce, order=order)
    return taylor_scores(model, calib, layers, width, opts, desc="scoring MLP (taylor)")


@MLP_SCORERS.register("random")
@layerwise_capable
def score_random(model, calib: Calibration) -> torch.Tensor:
    """Uniform random scores, seeded (the control every scorer must beat)."""
    shape = ModelShape.from_config(model.config)
    gen = torch.Generator().manual_seed(calib.seed)
    return torch.rand(shape.num_hidden_layers, shape.intermediate_size, generator=gen)
