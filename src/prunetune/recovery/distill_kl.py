"""Memory-lean distillation loss: the KL over chunks of positions, optionally on the teacher's top-k logits.

The plain loss (distill.distill_loss) holds the student's and the teacher's [positions, vocab] logits
and several fp32 copies of them (log-softmaxes, the element-wise KL) at once: gigabytes per
micro-batch at a 150k vocabulary. Here the causal-LM head runs on `chunk_size` positions at a time
inside torch.utils.checkpoint, so one chunk's logits exist at a time in the forward and in the
backward (each chunk's head is re-run for its backward: one extra head matmul per chunk, for the
teacher too unless top-k is on). The loss and its gradients equal the plain ones (tested).

Top-k (`top_k`): the teacher's distribution is renormalised over its k largest logits and the KL is
taken on those k indices against the student's full-vocabulary log-probabilities,
    KL_k = sum_{i in top-k} p_i (log p_i - log q_i),  p = softmax(t[top-k] / T),  q = softmax(s / T),
so the student is still pushed to put its mass on the teacher's top-k (its normaliser spans the whole
vocabulary), the teacher's tail is dropped rather than guessed, and k = vocab is exactly the full KL.
Only the teacher's [positions, k] values and indices are kept, so its head runs once per chunk.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from prunetune.data import IGNORE


def chunked_distill_loss(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    labels: torch.Tensor,
    *,
    student_head,
    teacher_head,
    temperature: float,
    alpha: float,
    chunk_size: int | None = None,
    top_k: int | None = None,
):
    """(loss, kl) as distill.distill_loss computes them from logits, but from final hidden states.

    `student_head` / `teacher_head` map [n, hidden] final hidden states to [n, vocab] logits (the
    adapter's output_logits); `chunk_size` None runs all positions as one chunk.
    """
    mask = labels[:, 1:] != IGNORE
    hs = student_hidden[:, :-1][mask]
    ht = teacher_hidden[:, :-1][mask]
    targets = labels[:, 1:][mask]
    n = hs.shape[0]
    if n == 0:
        zero = student_hidden.sum() * 0.0
        return zero, zero.detach()
    size = chunk_size or n
    kl_sum, ce_sum = 0.0, 0.0
    for start in range(0, n, size):
        part = slice(start, start + size)
        if top_k:
            with torch.no_grad():
                teacher = teacher_head(ht[part]).float().topk(top_k, dim=-1)
            fn = partial(_topk_terms, student_head, temperature, alpha > 0)
            kl, ce = checkpoint(fn, hs[part], targets[part], teacher.values, teacher.indices, use_reentrant=False)
        else:
            fn = partial(_full_terms, student_head, teacher_head, temperature, alpha > 0)
            kl, ce = checkpoint(fn, hs[part], targets[part], ht[part], use_reentrant=False)
        kl_sum, ce_sum = kl_sum + kl, ce_sum + ce
    kl = kl_sum / n
    loss = (1.0 - alpha) * kl * temperature**2
    if alpha > 0:
        loss = loss + alpha * ce_sum / n
    return loss, kl.detach()


def _student(head, hidden, targets, temperature: float, with_ce: bool):
    logits = head(hidden).float()
    ce = F.cross_entropy(logits, targets, reduction="sum") if with_ce else logits.new_zeros(())
    return F.log_softmax(logits / temperature, -1), ce


def _full_terms(student_head, teacher_head, temperature, with_ce, hidden, targets, teacher_hidden):
    log_q, ce = _student(student_head, hidden, targets, temperature, with_ce)
    with torch.no_grad():
        log_p = F.log_softmax(teacher_head(teacher_hidden).float() / temperature, -1)
    return F.kl_div(log_q, log_p, log_target=True, reduction="sum"), ce


def _topk_terms(student_head, temperature, with_ce, hidden, targets, values, indices):
    log_q, ce = _student(student_head, hidden, targets, temperature, with_ce)
    log_p = F.log_softmax(values / temperature, -1)
    return F.kl_div(log_q.gather(-1, indices), log_p, log_target=True, reduction="sum"), ce
