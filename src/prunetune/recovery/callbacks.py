"""What watches a recovery from inside the Trainer: the NaN stop, the divergence watch, the metrics
lines and the progress bar. Every tuner gets them through `trainer.fit()`."""

from __future__ import annotations

import math
import time

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from prunetune.errors import UserError
from prunetune.io import append_jsonl
from prunetune.recovery import sharding


class Diverged(UserError):
    """Recovery left the region it started in; the model in memory is garbage, the input on disk untouched."""

    def __init__(self, what: str):
        super().__init__(f"training diverged: {what} (lower learning_rate); the input model was not saved over")


class FiniteLossMixin:
    """Stops training the moment a step's loss is NaN or infinite."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            raise Diverged(f"loss is {loss.float().mean().item()} at step {self.state.global_step + 1}")
        return loss


class DivergenceCallback(TrainerCallback):
    """Stops training when it runs away: a non-finite gradient norm, the largest |weight| grown
    WEIGHT_GROWTH-fold over its start, or (for losses that measure fit) the loss LOSS_GROWTH-fold over
    its first value. A learning rate of 1e6 drives weights to ~1e6 with a flat loss, so the weights
    are watched too, not only the loss."""

    WEIGHT_GROWTH = 100.0
    LOSS_GROWTH = 3.0

    def __init__(self, model, *, check_loss: bool = True):
        self.model, self.check_loss = model, check_loss
        self.w0 = self.loss0 = None

    def _max_abs(self) -> float:
        return sharding.max_abs(self.model)

    def on_train_begin(self, args, state, control, **kw):
        self.w0 = max(self._max_abs(), 1e-3)

    def on_log(self, args, state, control, logs=None, **kw):
        logs, step = logs or {}, state.global_step
        gn = logs.get("grad_norm")
        if gn is not None and not math.isfinite(float(gn)):
            raise Diverged(f"gradient norm is {gn} at step {step}")
        loss = logs.get("loss")
        if self.check_loss and loss is not None:
            if self.loss0 is None:
                self.loss0 = float(loss)
            elif float(loss) > self.LOSS_GROWTH * self.loss0 + 1.0:
                raise Diverged(f"loss {float(loss):.4g} at step {step}, up from {self.loss0:.4g}")
        w = self._max_abs()
        if not math.isfinite(w) or w > self.WEIGHT_GROWTH * self.w0:
            raise Diverged(f"largest |weight| {w:.3g} at step {step}, {w / self.w0:.0f}x its start")


class MetricsCallback(TrainerCallback):
    """One dict per logging step (step, loss, tokens, wall_time, lr, + tuner extras); rank 0 appends JSONL."""

    def __init__(self, metrics_path=None, extra_keys=(), max_tokens=None, step_offset=0):
        self.metrics: list[dict] = []
        self.path = metrics_path
        self.extra = tuple(extra_keys)
        self.max_tokens = max_tokens
        self.offset = step_offset
        self.t0 = time.perf_counter()

    def on_train_begin(self, args, state, control, **kw):
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        if self.max_tokens is not None and state.num_input_tokens_seen >= self.max_tokens:
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        if "loss" not in logs:  # the end-of-training summary has train_loss instead
            return
        rec = {
            "step": state.global_step,
            "loss": float(logs["loss"]),
            "tokens": int(logs.get("num_input_tokens_seen", state.num_input_tokens_seen) or 0),
            "wall_time": round(time.perf_counter() - self.t0, 3),
            "lr": float(logs.get("learning_rate", 0.0)),
        }
        if self.offset:
            rec["global_step"] = self.offset + state.global_step
        for key in self.extra:
            if logs.get(key) is not None:
                rec[key] = float(logs[key])
        self.metrics.append(rec)
        if self.path is not None and state.is_world_process_zero:
            append_jsonl(self.path, rec)


class BarOnlyProgress(ProgressCallback):
    """transformers' ProgressCallback, but a log shows the loss on the bar instead of printing the dict."""

    def on_log(self, args, state, control, logs=None, **kw):
        if self.training_bar is not None and logs and "loss" in logs:
            self.training_bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)
