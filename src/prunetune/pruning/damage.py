"""Damage: how much a cut hurts, measured with forward passes only (decide, never edit).

The damage of removing units is the rise in next-token loss (nats per token) on held-out text. Two more
measures sit beside it (issue 27; FINDINGS: loss hides answer flips that KL to the dense model shows):
the loss on the final answer's tokens only (`answer_pairs`), and the KL of the model to the dense model
on the dense model's own greedy generations, teacher-forced (`dense_reference` once, then
`kl_to_reference`). `measure` reads any of the three by name. Candidate
MLP cuts are measured by zeroing the lowest-scoring neurons' contributions (the down projection's input)
through temporary hooks, which equals removing them (surgery's invariant, tested); the model is left as
it was, hooks removed and modes restored, even on errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prunetune.errors import UserError
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


MEASURES = ("held_out", "answer", "kl")
"""The damage measures a probe can fit and the loop logs: held-out loss on worked solutions, loss on the
final answer's tokens only, KL to the dense model on its own generations."""

ANSWER_MARK = "####"


def answer_pairs(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(prompt + worked solution, final answer) from (prompt, continuation): the loss on answer tokens only.

    The answer is what follows the last `####` (GSM8K's and arith's mark), else the continuation's last
    line; the solution before it becomes context, so only the answer's tokens are scored.
    """
    out = []
    for prompt, cont in pairs:
        at = cont.rfind(ANSWER_MARK)
        at = at + len(ANSWER_MARK) if at >= 0 else cont.rstrip().rfind("\n") + 1
        if cont[at:].strip():
            out.append((prompt + cont[:at], cont[at:]))
    return out


@dataclass
class DenseReference:
    """The dense model's greedy generations and its top-k next-token log-probabilities along them."""

    batches: list[dict]
    """Right-padded prompt + generation, labels on the generated tokens only."""
    top_ids: list[torch.Tensor]
    """Per batch, [rows, positions, k] token ids of the dense model's k most likely next tokens."""
    top_logprobs: list[torch.Tensor]
    """Per batch, their log-probabilities (float32)."""


def dense_reference(model, tokenizer, prompts: list[str], *, max_new_tokens: int = 64, top_k: int = 32,
                    batch_size: int = 8) -> DenseReference:
    """Generate greedily from `prompts` with the (dense) model and keep its top-k log-probs along the text.

    Only the top `top_k` tokens per position are kept (memory stays rows x positions x k, whatever the
    vocabulary): `kl_to_reference` compares the distributions coarsened to those k tokens plus "the rest",
    a lower bound of the full KL that equals it when the dense model puts its mass on the k tokens.
    """
    from prunetune.data import IGNORE, right_pad

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = []
    with scoring_pass(model):
        device = next(model.parameters()).device
        for prompt in prompts:  # one at a time: no padding inside generate, so no padding side to get wrong
            ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(device)
            gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=pad)[0, ids.shape[1]:].tolist()
            if tokenizer.eos_token_id in gen:
                gen = gen[: gen.index(tokenizer.eos_token_id) + 1]
            if gen:
                p = ids[0].tolist()
                rows.append((p + gen, [IGNORE] * len(p) + gen))
    if not rows:
        raise UserError("dense_reference: the dense model generated nothing from the held-out prompts")
    batches = [right_pad([i for i, _ in rows[k : k + batch_size]], pad, [lab for _, lab in rows[k : k + batch_size]])
               for k in range(0, len(rows), batch_size)]
    top_ids, top_lp = [], []
    with scoring_pass(model):
        for b in batches:
            lp = _next_token_logprobs(model, b)
            v, i = lp.topk(min(top_k, lp.shape[-1]), dim=-1)
            top_ids.append(i.cpu())
            top_lp.append(v.float().cpu())
    return DenseReference(batches, top_ids, top_lp)


def kl_to_reference(model, ref: DenseReference) -> float:
    """Mean KL(dense || model) per generated token, teacher-forced on the dense model's generations, over
    the dense model's top-k tokens plus one bucket for the rest (see `dense_reference`)."""
    total, count = 0.0, 0
    with scoring_pass(model):
        for b, ids, p_lp in zip(ref.batches, ref.top_ids, ref.top_logprobs):
            lp = _next_token_logprobs(model, b).float().cpu()
            q_lp = lp.gather(-1, ids)
            p_rest = (1 - p_lp.exp().sum(-1)).clamp_min(1e-12)
            q_rest = (1 - q_lp.exp().sum(-1)).clamp_min(1e-12)
            kl = (p_lp.exp() * (p_lp - q_lp)).sum(-1) + p_rest * (p_rest.log() - q_rest.log())
            scored = b["labels"][:, 1:] != -100
            total += float(kl[scored].sum())
            count += int(scored.sum())
    return total / max(count, 1)


def _next_token_logprobs(model, batch: dict) -> torch.Tensor:
    """[rows, positions - 1, vocab] log-probabilities of the next token at every position."""
    device = next(model.parameters()).device
    logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                   use_cache=False).logits[:, :-1]
    return torch.log_softmax(logits.float(), dim=-1)


def measure(model, name: str, *, held_out: list[dict], answer: list[dict] | None = None,
            reference: DenseReference | None = None) -> float:
    """The damage measure `name` (one of MEASURES) of `model`: lower is better for all three."""
    if name == "held_out":
        return held_out_loss(model, held_out)
    if name == "answer":
        return held_out_loss(model, answer)
    if name == "kl":
        return kl_to_reference(model, reference)
    raise UserError(f"unknown damage measure '{name}'; choose from {', '.join(MEASURES)}")
