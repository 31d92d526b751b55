"""The Taylor criterion shared by the MLP-neuron and KV-group scorers: the loss change from zeroing a unit,
estimated from each weight times its LM-loss gradient (w * dL/dw), summed over the unit's weights.

Near a trained optimum the signed terms w * g cancel, within a unit and between samples, so the signed
sum over a whole calibration set says little about which unit matters (on SmolLM2-135M it chose worse
neurons than torch-pruning's element-wise GroupTaylor, bench/results/smollm2_scorers.md). By default each
weight contributes |w * g| computed from each sample's own gradient, and nothing cancels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from prunetune.pruning.importance.calibration import check_batches, loss_tokens, taylor_pass
from prunetune.pruning.importance.scorers import Calibration

Reducer = Callable[[torch.Tensor], torch.Tensor]
"""Sums a per-weight tensor (the shape of one parameter) into one value per unit of a layer."""
LayerPieces = list[tuple[int, list[tuple[torch.Tensor, Reducer]]]]
"""Per layer index, the parameters holding the units' weights, each with its reducer."""


@dataclass
class TaylorOptions:
    per: Literal["sample", "batch", "calibration"] = "sample"
    """Whose gradient each term uses: each calibration sample's own (terms never cancel between samples,
    and the score does not depend on how samples were batched), each calibration batch's, or the whole
    calibration set's (torch-pruning's GroupTaylor after backward over every batch)."""
    reduce: Literal["element", "unit"] = "element"
    """element: sum over the unit's weights of each weight's term (torch-pruning, LLM-Pruner); unit: the
    term of the unit's summed w * g (the first-order loss change of zeroing the whole unit, whose signed
    parts cancel near an optimum)."""
    order: Literal["first", "second"] = "first"
    """first: |w * g|; second: 0.5 * (w * g)^2, the diagonal empirical-Fisher (OBD) saliency; with
    reduce=unit and per=sample it is Molchanov et al.'s (2019) squared group Taylor criterion."""


@dataclass
class KvTaylorOptions(TaylorOptions):
    """KV groups default to the signed group sum over the calibration set: on SmolLM2-135M (one of three
    groups removed) it chose far better groups than element-wise per-sample terms (36 vs 285 perplexity,
    bench/results/smollm2_scorers.md), and it costs one backward per batch."""

    per: Literal["sample", "batch", "calibration"] = "calibration"
    reduce: Literal["element", "unit"] = "unit"


def single_rows(batches: list[dict]) -> list[dict]:
    """Each row of each batch as its own one-row batch with the padding dropped (padding on either side)."""
    rows = []
    for batch in batches:
        for i in range(batch["input_ids"].shape[0]):
            real = batch["attention_mask"][i].bool()
            row = {k: batch[k][i][real].unsqueeze(0) for k in ("input_ids", "attention_mask")}
            if batch.get("labels") is not None:
                row["labels"] = batch["labels"][i][real].unsqueeze(0)
            if row["input_ids"].shape[1]:
                rows.append(row)
    return rows


def _term(x: torch.Tensor, order: str) -> torch.Tensor:
    return x.abs() if order == "first" else 0.5 * x.square()


def taylor_scores(
    model, calib: Calibration, layers: LayerPieces, units: int, opts: TaylorOptions, *, desc: str
) -> torch.Tensor:
    """[num_layers, units] fp32 CPU scores: the Taylor terms of `layers`' weights, summed per unit.

    Gradients are of each step's summed token loss (a sample, a batch, or every batch added up); the
    scores are divided by the number of loss tokens, so they are per-token means whatever the batching.
    """
    batches = check_batches(calib.batches)
    steps = single_rows(batches) if opts.per == "sample" else batches
    params = list({id(t): t for _, pieces in layers for t, _ in pieces}.values())
    acc = torch.zeros(len(layers), units)  # the summed terms
    unit_sums = torch.zeros(len(layers), units)  # reduce=unit: this step's signed per-unit sums of w * g
    total_grad = None
    if opts.per == "calibration":
        total_grad = {id(p): torch.zeros_like(p, dtype=torch.float32) for p in params}

    def add_terms(grad_of) -> None:
        with torch.no_grad():
            for idx, pieces in layers:
                for t, reducer in pieces:
                    g = grad_of(t)
                    if g is None:
                        continue
                    wg = t.detach().float() * g.float()
                    if opts.reduce == "element":
                        acc[idx] += reducer(_term(wg, opts.order)).cpu()
                    else:
                        unit_sums[idx] += reducer(wg).cpu()
        if opts.reduce == "unit":
            acc.add_(_term(unit_sums, opts.order))
            unit_sums.zero_()

    def accumulate() -> None:
        if total_grad is None:
            add_terms(lambda t: t.grad)
            return
        with torch.no_grad():
            for p in params:
                if p.grad is not None:
                    total_grad[id(p)] += p.grad.float()

    taylor_pass(model, steps, params, accumulate, desc=desc, progress=calib.progress)
    if total_grad is not None:
        add_terms(lambda t: total_grad[id(t)])
    tokens = sum(loss_tokens(b) for b in batches)
    return acc / max(tokens, 1)
