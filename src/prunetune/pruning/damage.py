"""Damage: how much a cut hurts, measured with forward passes only (decide, never edit).

The damage of removing units is the rise in next-token loss (nats per token) on held-out text. Candidate
MLP cuts are measured by zeroing the lowest-scoring neurons' contributions (the down projection's input)
through temporary hooks, which equals removing them (surgery's invariant, tested); the model is left as
it was, hooks removed and modes restored, even on errors.
"""

from __future__ import annotations

import torch

from prunetune.models import get_adapter
from prunetune.pruning.importance.calibration import check_batches, mean_loss, scoring_pass


def held_out_batches(tokenizer, pairs: list[tuple[str, str]], *, max_length: int = 256, batch_size: int = 8) -> list[dict]:
    """Right-padded batches of prompt + continuation with the loss on the continuation only."""
    from prunetune.data import IGNORE, right_pad

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = []
    for prompt, cont in pairs:
        p = tokenizer(prompt)["input_ids"] if prompt else []
        c = tokenizer(cont, add_special_tokens=not prompt)["input_ids"]
        c = c[: max_length - 1]
        p = p[len(p) - (max_length - len(c)) :] if len(p) + len(c) > max_length else p  # keep the question's end
        rows.append((p + c, [IGNORE] * len(p) + c))
    rows = [r for r in rows if any(t != IGNORE for t in r[1][1:])]
    return [right_pad([i for i, _ in rows[k : k + batch_size]], pad, [lab for _, lab in rows[k : k + batch_size]])
            for k in range(0, len(rows), batch_size)]


def held_out_loss(model, batches: list[dict]) -> float:
    """The model's next-token loss on `batches` (the reference point of a damage measurement)."""
    with scoring_pass(model):
        return mean_loss(model, check_batches(batches, "held-out batches"))


def mlp_cut_losses(model, scores: torch.Tensor, counts: list[int], batches: list[dict]) -> list[float]:
    """The held-out loss with the `k` lowest-scoring MLP neurons of every layer zeroed, for each k in `counts`.

    `scores` is [num_layers, intermediate_size] (higher = kept), as the MLP scorers return it.
    """
    adapter = get_adapter(model)
    layers = adapter.layers(model)
    order = torch.argsort(scores.float(), dim=1, stable=True)  # lowest first, ties by index like select.lowest
    batches = check_batches(batches, "held-out batches")
    keep = [torch.ones(scores.shape[1]) for _ in layers]

    def hook(idx):
        def zero(module, args):
            x = args[0]
            return (x * keep[idx].to(device=x.device, dtype=x.dtype),) + tuple(args[1:])

        return zero

    out = []
    with scoring_pass(model) as handles:
        for idx, layer in enumerate(layers):
            handles.append(adapter.mlp_out_linear(layer).register_forward_pre_hook(hook(idx)))
        for k in counts:
            for idx in range(len(layers)):
                keep[idx].fill_(1.0)
                keep[idx][order[idx, :k]] = 0.0
            out.append(mean_loss(model, batches))
    return out


def candidate_cuts(remaining: int, round_to: int) -> list[int]:
    """Per-layer neuron counts to try, largest first: everything left, then halves down to one `round_to` unit."""
    out, k = [], remaining
    while k >= round_to:
        c = k // round_to * round_to
        if not out or c < out[-1]:
            out.append(c)
        k //= 2
    return out or ([remaining] if remaining > 0 else [])
