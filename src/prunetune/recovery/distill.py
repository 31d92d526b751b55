"""Logit distillation: KL(teacher || student) on temperature-softened logits, optionally mixed with LM loss.

The teacher (the model before this iteration's pruning, or the dense original) is frozen, in eval
mode, and may be held in bf16. A Trainer subclass with `compute_loss` keeps everything else stock.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from transformers import Trainer

from prunetune.checkpoint import parse_dtype
from prunetune.config import bounded
from prunetune.data import IGNORE
from prunetune.errors import UserError
from prunetune.models import get_adapter
from prunetune.recovery.distill_kl import chunked_distill_loss
from prunetune.recovery.examples import PadCollator, pack_blocks, pair_examples, record_texts
from prunetune.recovery.trainer import (
    TUNERS,
    Context,
    FiniteLossMixin,
    RecoveryResult,
    TextConfig,
    fit,
    plan_steps,
    training_args,
)


@dataclass
class DistillConfig(TextConfig):
    prompt_field: str = "prompt"
    """prompt_completion format: record field holding the prompt."""
    completion_field: str = "completion"
    """prompt_completion format: record field holding the completion (the only tokens with loss)."""
    messages_field: str = "messages"
    """prompt_completion format: record field holding a chat list."""
    chat_template: bool | None = None
    """prompt_completion format: wrap records in the tokenizer's chat template (None: when it has one;
    false: as they are, e.g. recovery.teacher_data's formatted prompts)."""
    format: Literal["text", "prompt_completion"] = "text"
    """text (packed blocks, like cpt) | prompt_completion (like sft, KL on completions)."""
    temperature: float = bounded(2.0, gt=0.0)
    """Softening temperature T; the KL is multiplied by T^2."""
    alpha: float = bounded(0.0, ge=0.0, le=1.0)
    """Weight of the LM loss: loss = (1 - alpha) * KL + alpha * LM."""
    teacher_dtype: Literal["float32", "bfloat16", "float16"] | None = None
    """Hold the teacher in this dtype (e.g. bfloat16) to save memory."""
    chunk_size: int | None = bounded(None, ge=1)
    """Positions per KL chunk: the LM heads run on this many positions at a time, so the full
    [batch, seq, vocab] logits are never held (distill_kl.py); None: all positions at once."""
    top_k: int | None = bounded(None, ge=1)
    """KL on the teacher's top-k logits only (teacher renormalised over them; distill_kl.py); None: full vocabulary."""


def distill_loss(student_logits, teacher_logits, labels, temperature: float, alpha: float):
    """(loss, kl): mean per-token KL(teacher_T || student_T) * T^2, mixed (1 - alpha) : alpha with CE.

    Positions are those that predict a label (labels shifted by one, -100 ignored). `kl` is reported
    without the T^2 factor, as the KL between the softened distributions.
    """
    mask = labels[:, 1:] != IGNORE
    s = student_logits[:, :-1][mask].float()
    t = teacher_logits[:, :-1][mask].float()
    kl = F.kl_div(
        F.log_softmax(s / temperature, -1),
        F.log_softmax(t / temperature, -1),
        log_target=True,
        reduction="batchmean",
    )
    loss = (1.0 - alpha) * kl * temperature**2
    if alpha > 0:
        loss = loss + alpha * F.cross_entropy(s, labels[:, 1:][mask])
    return loss, kl.detach()


class DistillTrainer(FiniteLossMixin, Trainer):
    def __init__(self, *args, teacher, temperature: float, alpha: float, chunk_size=None, top_k=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher
        self.temperature = temperature
        self.alpha = alpha
        self.chunk_size, self.top_k = chunk_size, top_k
        self.loss_is_scaled_for_ga = False  # compute_loss returns a per-micro-batch mean
        self._kl: list[torch.Tensor] = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        feed = {"input_ids": inputs["input_ids"], "attention_mask": inputs.get("attention_mask")}
        if self.chunk_size or self.top_k:
            return self._lean_loss(model, feed, labels, return_outputs)
        outputs = model(**feed)
        with torch.no_grad():
            t_logits = self.teacher(**feed).logits
        loss, kl = distill_loss(outputs.logits, t_logits, labels, self.temperature, self.alpha)
        self._kl.append(kl)
        return (loss, outputs) if return_outputs else loss

    def _lean_loss(self, model, feed, labels, return_outputs):
        """The chunked / top-k loss from final hidden states: the student's own forward runs through
        its (possibly DDP-wrapped) module with logits for one position only, its hidden states caught
        by a hook on the decoder."""
        student = self.accelerator.unwrap_model(model)
        caught = {}
        hook = student.get_decoder().register_forward_hook(lambda m, a, out: caught.update(h=out[0]))
        try:
            outputs = model(**feed, logits_to_keep=1)
        finally:
            hook.remove()
        with torch.no_grad():
            t_hidden = self.teacher.get_decoder()(**feed)[0]
        adapter = get_adapter(student)
        loss, kl = chunked_distill_loss(
            caught["h"], t_hidden, labels,
            student_head=partial(adapter.output_logits, student),
            teacher_head=partial(adapter.output_logits, self.teacher),
            temperature=self.temperature, alpha=self.alpha, chunk_size=self.chunk_size, top_k=self.top_k,
        )
        self._kl.append(kl)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs, start_time=None):
        if self._kl and "loss" in logs:
            logs["kl"] = torch.stack(self._kl).mean().item()
            self._kl.clear()
        super().log(logs, start_time)


def prepare_teacher(teacher, student, dtype, device, top_k: int | None = None):
    """Freeze the teacher (eval, no grad, optional dtype) after checking it shares the student's vocabulary."""
    if teacher is None:
        raise UserError("distill needs a teacher model (--teacher DIR)")
    sv = student.get_output_embeddings().weight.shape[0]
    tv = teacher.get_output_embeddings().weight.shape[0]
    if sv != tv:
        raise UserError(
            f"teacher vocabulary size {tv} differs from the student's {sv}; distill needs the same tokenizer"
        )
    if top_k is not None and top_k > tv:
        raise UserError(f"distill.top_k: {top_k} exceeds the vocabulary size {tv}")
    teacher.eval()
    teacher.requires_grad_(False)
    if dtype is not None:
        teacher.to(parse_dtype(dtype))
    return teacher.to(device)


@TUNERS.register("distill", options=DistillConfig)
def train(model, tokenizer, records: list[dict], cfg: DistillConfig, ctx: Context) -> RecoveryResult:
    """Logit distillation: KL(teacher || student) on temperature-softened logits, optionally mixed with LM loss."""
    args = training_args(cfg, ctx)
    teacher = prepare_teacher(ctx.teacher, model, cfg.teacher_dtype, args.device, cfg.top_k)
    if cfg.format == "text":
        examples = pack_blocks(tokenizer, record_texts(records, cfg.text_field, cfg.template), cfg.max_length)
    else:
        examples = pair_examples(
            tokenizer,
            records,
            prompt_field=cfg.prompt_field,
            completion_field=cfg.completion_field,
            messages_field=cfg.messages_field,
            max_length=cfg.max_length,
            chat_template=cfg.chat_template,
        )
    mean_len = sum(len(e["input_ids"]) for e in examples) / len(examples)
    args.max_steps = plan_steps(cfg, args, len(examples), mean_len)
    return fit(
        DistillTrainer,
        model,
        tokenizer,
        examples,
        cfg,
        ctx,
        args,
        extra_metrics=("kl",),
        data_collator=PadCollator(tokenizer.pad_token_id),
        teacher=teacher,
        temperature=cfg.temperature,
        alpha=cfg.alpha,
        chunk_size=cfg.chunk_size,
        top_k=cfg.top_k,
    )
