"""Calibration batches and the scoring pass: streaming forwards with temporary hooks that never edit the model.

Every scorer runs through `scoring_pass`, which owns the invariants the rest relies on: hooks are
removed and `model.training` / `requires_grad` restored even when a forward raises, padding tokens
are masked out through a shared `TokenMask`, and statistics live in per-unit accumulators.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from prunetune.data import right_pad
from prunetune.errors import UserError


def calibration_batches(
    tokenizer, texts: list[str], *, max_length: int = 256, batch_size: int = 8
) -> list[dict]:
    """Tokenise `texts` in order into right-padded batches of `input_ids` / `attention_mask` (CPU tensors).

    Right padding keeps position ids equal to token positions without passing them explicitly; the
    scorers mask the pads out, so a batch gives the same statistics as its rows one at a time.
    """
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise UserError("calibration text is empty: give at least one non-empty text")
    if max_length < 2:
        raise UserError(f"calibration max_length must be at least 2, got {max_length}")
    if batch_size < 1:
        raise UserError(f"calibration batch_size must be at least 1, got {batch_size}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batches = []
    for start in range(0, len(texts), batch_size):
        enc = [
            tokenizer(t, truncation=True, max_length=max_length)["input_ids"]
            for t in texts[start : start + batch_size]
        ]
        batches.append(right_pad([ids if ids else [pad_id] for ids in enc], pad_id))
    return batches


class TokenMask:
    """Which positions of the current batch are real tokens, in the flattened [batch * seq] layout hooks see.

    `weights` (fp32, 1 for a real token, 0 for a pad) turns a masked sum over tokens into one
    matrix-vector product; `last` indexes each row's last real token.
    """

    def __init__(self) -> None:
        self.weights: torch.Tensor | None = None
        self.last: torch.Tensor | None = None
        self.all_real = True

    def set(self, attention_mask: torch.Tensor) -> None:
        b, t = attention_mask.shape
        mask = attention_mask.to(torch.float32)
        self.weights = mask.reshape(-1)
        self.all_real = bool(attention_mask.all())
        positions = torch.arange(t, device=attention_mask.device)
        last_pos = (mask * positions).argmax(dim=1)  # index of the last 1 in each row (right or left padding)
        self.last = torch.arange(b, device=attention_mask.device) * t + last_pos

    def masked_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of `x` ([tokens, n], any float dtype) over real tokens, in fp32: [n]."""
        x = x.float()
        if self.all_real:
            return x.sum(dim=0)
        return self.weights @ x

    @property
    def count(self) -> float:
        return float(self.weights.sum())


def model_device(model) -> torch.device:
    return next(model.parameters()).device


@contextlib.contextmanager
def scoring_pass(model, *, grad_params: list[torch.nn.Parameter] | None = None) -> Iterator[list]:
    """Eval mode, no_grad unless `grad_params`, a list to register hook handles into, and a restore on exit.

    With `grad_params`, exactly those parameters require grad (others are frozen so backward does
    not compute gradients nobody reads); their previous `.grad` and every `requires_grad` flag are
    restored afterwards, so a taylor score leaves no gradient behind.
    """
    was_training = model.training
    handles: list = []
    saved_flags = None
    saved_grads = None
    if grad_params is not None:
        saved_flags = [(p, p.requires_grad) for p in model.parameters()]
        saved_grads = [(p, p.grad) for p in grad_params]
        wanted = {id(p) for p in grad_params}
        for p in model.parameters():
            p.requires_grad_(id(p) in wanted)
        for p in grad_params:
            p.grad = None
    model.eval()
    try:
        with torch.no_grad() if grad_params is None else torch.enable_grad():
            yield handles
    finally:
        for h in handles:
            h.remove()
        if grad_params is not None:
            for p, grad in saved_grads:
                p.grad = grad
            for p, flag in saved_flags:
                p.requires_grad_(flag)
        model.train(was_training)


def progress_bar(batches: list[dict], desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(batches, desc=desc, disable=not progress, leave=False)


def forward(model, batch: dict, mask: TokenMask, *, with_loss: bool = False):
    """One forward pass on `batch` (moved to the model's device) after pointing `mask` at it.

    With `with_loss`, labels are the inputs with pads set to -100, so the returned loss is the mean
    next-token loss over real tokens only. Without it only the decoder stack runs: statistics come
    from hooks inside the layers, so computing vocabulary logits would be wasted work.
    """
    device = model_device(model)
    input_ids = batch["input_ids"].to(device)
    attention_mask = batch["attention_mask"].to(device)
    mask.set(attention_mask)
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    if with_loss:
        labels = batch.get("labels")
        kwargs["labels"] = labels.to(device) if labels is not None else input_ids.masked_fill(attention_mask == 0, -100)
        return model(**kwargs)
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    return decoder(**kwargs)


def loss_tokens(batch: dict) -> int:
    """How many next-token targets a batch's mean loss averages over (real tokens after the first, or
    the positions its `labels` score)."""
    if batch.get("labels") is not None:
        return int((batch["labels"][:, 1:] != -100).sum())
    return int(batch["attention_mask"][:, 1:].sum())


def mean_loss(model, batches: list[dict], mask: TokenMask | None = None) -> float:
    """Token-weighted next-token loss of `model` over `batches` (call inside scoring_pass)."""
    mask = mask or TokenMask()
    total, count = 0.0, 0
    for batch in batches:
        n = loss_tokens(batch)
        total += float(forward(model, batch, mask, with_loss=True).loss) * n
        count += n
    return total / max(count, 1)


def check_batches(batches, name: str = "calibration batches") -> list[dict]:
    if not batches:
        raise UserError(f"{name} are empty: give at least one calibration text")
    return list(batches)


def taylor_pass(
    model, batches: list[dict], params: list[torch.nn.Parameter], accumulate, *, desc: str, progress: bool
) -> None:
    """Backward the LM loss of each batch into `params` only, and call `accumulate()` after each one.

    `accumulate` reads `p.grad` (this batch's gradient, weighted by its token count so batches of
    different lengths count per token) into fp32 per-unit sums; the gradients are cleared before the
    next batch, so at most one batch of gradients for the scored weights exists at a time.
    """
    mask = TokenMask()
    with scoring_pass(model, grad_params=params):
        for batch in progress_bar(batches, desc, progress):
            loss = forward(model, batch, mask, with_loss=True).loss
            (loss * loss_tokens(batch)).backward()
            accumulate()
            for p in params:
                p.grad = None


def calibration_inputs(
    tokenizer,
    source: str | None,
    general: str | None = None,
    *,
    field: str = "text",
    limit: int = 64,
    max_length: int = 256,
    seed: int = 0,
) -> tuple[list[dict], list[dict] | None]:
    """Tokenised reasoning calibration batches from a text source or file, and general-text batches when given."""
    from prunetune.data import calibration_texts

    texts = calibration_texts(source, field=field, limit=limit, seed=seed)
    batches = calibration_batches(tokenizer, texts, max_length=max_length)
    general_batches = None
    if general:
        general_texts = calibration_texts(general, field=field, limit=limit)
        general_batches = calibration_batches(tokenizer, general_texts, max_length=max_length)
    return batches, general_batches
