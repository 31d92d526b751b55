"""One learning-rate schedule across many recovery calls, and AdamW state carried between them.

The paper recovers after every pruning iteration. Restarting warmup and cosine decay in every
iteration would spike the learning rate each time, so a `GlobalSchedule` makes each `recover()` call
one slice of a single schedule. transformers' schedulers cannot start mid-way (their lambdas are
private), so the multiplier is written here and tested against transformers' own schedulers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from prunetune.errors import UserError
from prunetune.recovery.sharding import full_tensor, shard_like

SCHEDULE_TYPES = ("cosine", "linear", "constant", "wsd")


@dataclass
class GlobalSchedule:
    """A schedule over `total_steps` optimizer steps of all iterations; this call starts at `start_step`."""

    total_steps: int
    start_step: int = 0
    warmup_ratio: float = 0.0
    lr_scheduler_type: str = "cosine"
    decay_ratio: float = 0.1
    """wsd only: the share of total_steps, at the end, over which the rate decays linearly to zero."""

    def __post_init__(self):
        if self.lr_scheduler_type not in SCHEDULE_TYPES:
            raise UserError(
                f"lr_scheduler_type '{self.lr_scheduler_type}' is not supported; choose from {', '.join(SCHEDULE_TYPES)}"
            )
        if self.total_steps <= 0:
            raise UserError("schedule total_steps must be positive")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise UserError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")

    @property
    def warmup_steps(self) -> int:
        return math.ceil(self.warmup_ratio * self.total_steps)

    def multiplier(self, step: int) -> float:
        """The learning-rate factor at global optimizer step `step` (as transformers' schedulers define it)."""
        warmup = self.warmup_steps
        if step < warmup:
            return step / max(1, warmup)
        if self.lr_scheduler_type == "constant":
            return 1.0
        if self.lr_scheduler_type == "wsd":  # warm-up, stable, then a linear decay over the last decay_ratio
            decay = max(1, math.ceil(self.decay_ratio * self.total_steps))
            start = self.total_steps - decay
            return 1.0 if step < start else max(0.0, (self.total_steps - step) / decay)
        progress = (step - warmup) / max(1, self.total_steps - warmup)
        if self.lr_scheduler_type == "linear":
            return max(0.0, 1.0 - progress)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    def lambda_lr(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        """A LambdaLR whose local step k is global step `start_step + k`."""
        start = self.start_step
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: self.multiplier(start + k))


def named_trainable(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def make_optimizer(
    model: torch.nn.Module,
    *,
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    optimizer_state: dict | None = None,
):
    """AdamW over the trainable parameters (decay on matrices only), with carried state loaded by NAME.

    State keyed by name (not by position, as torch's state_dict is) survives pruning between calls:
    entries whose name is gone or whose shape changed are skipped, and their count is returned. The
    state is full-size; a parameter sharded by FSDP2 gets its own shard of it.
    """
    named = named_trainable(model)
    decay = [p for n, p in named if p.ndim >= 2]
    no_decay = [p for n, p in named if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=betas,
        eps=eps,
    )
    skipped = 0
    for name, p in named:
        st = (optimizer_state or {}).get(name)
        if st is None:
            continue
        if st["exp_avg"].shape != p.shape:
            skipped += 1
            continue
        opt.state[p] = {
            "step": torch.as_tensor(st["step"], dtype=torch.float32).clone(),
            "exp_avg": shard_like(st["exp_avg"], p),
            "exp_avg_sq": shard_like(st["exp_avg_sq"], p),
        }
    return opt, skipped


def export_optimizer_state(model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict:
    """{param_name: {"exp_avg", "exp_avg_sq", "step"}} on CPU, for the next call's `optimizer_state`.

    Sharded moments are gathered whole on every rank (each rank slices them with the next cut)."""
    out = {}
    for name, p in named_trainable(model):
        st = opt.state.get(p)
        if st and "exp_avg" in st:
            out[name] = {
                "exp_avg": full_tensor(st["exp_avg"].detach()).to("cpu").clone(),
                "exp_avg_sq": full_tensor(st["exp_avg_sq"].detach()).to("cpu").clone(),
                "step": torch.as_tensor(st["step"]).detach().to("cpu").clone(),
            }
    return out
