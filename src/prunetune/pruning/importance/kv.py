"""KV-group importance: one score per key/value head together with the query heads that share it.

Higher = more important. Query heads of group g are g * group_size .. (g + 1) * group_size - 1, and a
query head's output occupies head_dim consecutive input columns of o_proj.
"""

from __future__ import annotations

from functools import partial

import torch

from prunetune.models import get_adapter
from prunetune.models.shape import ModelShape
from prunetune.pruning.importance.calibration import (
    TokenMask,
    check_batches,
    scoring_pass,
)
from prunetune.pruning.importance.layerwise import layerwise_capable, run_forwards, scoring_device
from prunetune.pruning.importance.scorers import KV_SCORERS, Calibration
from prunetune.pruning.importance.taylor import KvTaylorOptions, TaylorOptions, taylor_scores


def head_grams(o_weight: torch.Tensor, num_heads: int, head_dim: int) -> torch.Tensor:
    """G_h = W_h^T W_h ([heads, head_dim, head_dim], fp32) for each query head's o_proj column block W_h.

    ||x_h W_h^T||^2 = x_h G_h x_h^T, so the per-head output norm costs head_dim^2 per token and head
    instead of head_dim * hidden_size, and never materialises per-head outputs.
    """
    w = o_weight.detach().float().reshape(o_weight.shape[0], num_heads, head_dim)
    return torch.einsum("ohd,ohe->hde", w, w)


@KV_SCORERS.register("activation")
@layerwise_capable
def score_activation(model, calib: Calibration) -> torch.Tensor:
    """Per query head, ||head output through o_proj|| averaged over real tokens; summed over each group."""
    batches, progress = check_batches(calib.batches), calib.progress
    adapter = get_adapter(model)
    shape = ModelShape.from_config(model.config)
    heads, d = shape.num_attention_heads, shape.head_dim
    head_sum = torch.zeros(shape.num_hidden_layers, heads, device=scoring_device(model, calib.layerwise))
    grams: dict[int, torch.Tensor] = {}  # read in the hook, where o_proj's weight is (layer-wise: its turn)
    mask = TokenMask()

    def make_hook(idx: int):
        def hook(module, args):
            if idx not in grams:
                grams[idx] = head_grams(module.weight, heads, d)
            x = args[0].reshape(-1, heads, d).float().transpose(0, 1)  # [heads, tokens, d]
            sq = (torch.bmm(x, grams[idx]) * x).sum(dim=-1)  # [heads, tokens]
            head_sum[idx] += mask.masked_sum(sq.clamp_min_(0).sqrt_().T)

        return hook

    with scoring_pass(model) as handles:
        for idx, layer in enumerate(adapter.layers(model)):
            handles.append(adapter.attn_out_linear(layer).register_forward_pre_hook(make_hook(idx)))
        run_forwards(model, batches, mask, layerwise=calib.layerwise, desc="scoring KV groups (activation)",
                     progress=progress)
    tokens = sum(float(b["attention_mask"].sum()) for b in batches)
    per_head = head_sum.cpu() / max(tokens, 1.0)
    return per_head.reshape(shape.num_hidden_layers, shape.num_key_value_heads, shape.group_size).sum(dim=-1)


def group_params(model) -> list[tuple[int, list[tuple[torch.Tensor, str, int, int]]]]:
    """Per layer, (tensor, kind, first row, per-group size) for each piece holding per-group weights.

    kind "rows": rows [first, first + groups * size) in consecutive per-group runs (q/k/v weights and
    biases, fused or not); kind "cols": o_proj columns, group_size * head_dim per group.
    """
    adapter = get_adapter(model)
    shape = ModelShape.from_config(model.config)
    d, kv = shape.head_dim, shape.num_key_value_heads
    rows_per_group = {"q": shape.group_size * d, "k": d, "v": d}
    out = []
    for idx, layer in enumerate(adapter.layers(model)):
        pieces = []
        for rb in adapter.attn_in_blocks(layer):
            first = 0
            for name in rb.blocks:
                size = rows_per_group[name]
                pieces.append((rb.linear.weight, "rows", first, size))
                if rb.linear.bias is not None:
                    pieces.append((rb.linear.bias, "rows", first, size))
                first += kv * size
        pieces.append((adapter.attn_out_linear(layer).weight, "cols", 0, shape.group_size * d))
        out.append((idx, pieces))
    return out


def _per_group(t: torch.Tensor, kind: str, first: int, size: int, groups: int) -> torch.Tensor:
    if kind == "cols":
        return t.sum(dim=0).reshape(groups, size).sum(dim=1)
    t = t[first : first + groups * size]
    if t.dim() == 2:
        t = t.sum(dim=1)
    return t.reshape(groups, size).sum(dim=1)


@KV_SCORERS.register("taylor", options=KvTaylorOptions)
def score_taylor(
    model, calib: Calibration, *, per: str = "calibration", reduce: str = "unit", order: str = "first"
) -> torch.Tensor:
    """|sum of w * dL/dw| over a group's q/k/v rows (and biases) and o_proj columns and the calibration set
    by default; options as for the MLP `taylor` (whose element-wise default did far worse on KV groups)."""
    shape = ModelShape.from_config(model.config)
    groups = shape.num_key_value_heads
    layers = [
        (
            idx,
            [
                (t, partial(_per_group, kind=kind, first=first, size=size, groups=groups))
                for t, kind, first, size in pieces
            ],
        )
        for idx, pieces in group_params(model)
    ]
    opts = TaylorOptions(per=per, reduce=reduce, order=order)
    return taylor_scores(model, calib, layers, groups, opts, desc="scoring KV groups (taylor)")
