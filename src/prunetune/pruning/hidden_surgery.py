"""Hidden-size surgery: residual-stream channels removed from every place that holds them (part of surgery).

The same channels leave the embeddings (columns), every projection reading the residual stream (q/k/v,
gate/up, fused or not: columns), every projection writing it (o_proj, down_proj: rows and biases),
every hidden_size norm and lm_head (columns); tied embeddings stay one tensor.

RMSNorm divides by the root mean square over the hidden size, so with channels gone the same vector is
normalised by a larger number: if the removed channels were zero, rms over the H_k kept channels is
sqrt(H / H_k) times rms over all H. The norms are compensated so that removing channels that are zero
everywhere leaves the logits unchanged (up to the norms' epsilon, which is not rescaled):
- a norm feeding projections (pre-norm, final norm) is scaled by sqrt(H / H_k);
- a norm whose output is added to the residual stream (post-norm) must match the stream's own scale:
  sqrt(H / H_k) times that scale. Gemma multiplies the embeddings by sqrt(hidden_size), so its whole
  stream shrinks by sqrt(H_k / H) and its post-norms need no factor (tied lm_head then sees the same
  final-norm output; the final norm is scale-free).
Norms computing x * (offset + w) (Gemma: 1 + w) get w' = (offset + w) * factor - offset. Adam moments of
rescaled norm weights are sliced, not rescaled.
"""

from __future__ import annotations

import torch
import torch.nn as nn


@torch.no_grad()
def cut_hidden(model: nn.Module, adapter, keep: torch.Tensor, slicer) -> None:
    """Keep only residual-stream channels `keep` (sorted indices); fix hidden_size and what follows it."""
    config = model.config
    H, Hk = config.hidden_size, len(keep)
    factor = (H / Hk) ** 0.5
    stream = (Hk / H) ** 0.5 if adapter.embed_scale else 1.0  # how much the residual stream shrinks
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = head is not None and head.weight is emb.weight
    slicer(emb, cols=keep)
    emb.embedding_dim = Hk
    if head is not None:
        if tied:
            head.weight = emb.weight
            head.in_features = Hk
        else:
            slicer(head, cols=keep)
    for layer in adapter.layers(model):
        for rb in adapter.attn_in_blocks(layer) + adapter.mlp_in_blocks(layer):
            slicer(rb.linear, cols=keep)
        slicer(adapter.attn_out_linear(layer), rows=keep)
        slicer(adapter.mlp_out_linear(layer), rows=keep)
        pre, post = adapter.layer_norms(layer)
        for norm in pre:
            _cut_norm(norm, keep, factor, adapter.norm_offset, slicer)
        for norm in post:
            _cut_norm(norm, keep, factor * stream, adapter.norm_offset, slicer)
    _cut_norm(adapter.final_norm_module(model), keep, factor, adapter.norm_offset, slicer)
    adapter.set_embed_scale(model, Hk)
    for m in model.modules():  # modules that cache the width (unused in forward, kept truthful)
        if getattr(m, "hidden_size", None) == H and isinstance(m.hidden_size, int):
            m.hidden_size = Hk
    config.hidden_size = Hk


def _cut_norm(norm: nn.Module, keep: torch.Tensor, factor: float, offset: float, slicer) -> None:
    slicer(norm, rows=keep)
    w = norm.weight.data
    w.copy_(((w.float() + offset) * factor - offset).to(w.dtype))
