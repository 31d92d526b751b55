"""Recovery after pruning: cpt, sft, distill and grpo as thin layers over transformers / trl / peft.

`recover()` is the one entry point: it validates the config, hands the model to the chosen tuner
and returns the trained model with its metrics and (for carrying) its AdamW state. It writes
nothing outside `work_dir` except the caller's `metrics_path`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from prunetune.recovery.config import TUNERS, config_keys, resolve
from prunetune.recovery.schedule import GlobalSchedule
from prunetune.recovery.trainer import Context, RecoveryResult

__all__ = ["TUNERS", "GlobalSchedule", "RecoveryResult", "config_keys", "recover", "resolve_config"]


def resolve_config(method: str, config: dict | None) -> dict:
    """The config with every default filled in (unknown keys are a UserError with did-you-mean)."""
    return resolve(method, config)


def recover(
    model,
    tokenizer,
    method: str,
    records: list[dict],
    config: dict | None,
    *,
    teacher=None,
    reward_funcs=None,
    work_dir: str | Path,
    metrics_path: str | Path | None = None,
    optimizer_state: dict | None = None,
    schedule: GlobalSchedule | None = None,
    progress: bool = True,
) -> RecoveryResult:
    """Train `model` (in place where possible) with tuner `method` on `records`; see config_keys(method).

    `schedule` makes this call one slice of a learning-rate schedule spanning all loop iterations;
    `optimizer_state` ({param_name: {exp_avg, exp_avg_sq, step}}) resumes AdamW from the previous call
    (entries whose parameter was pruned away or resized are skipped). A NaN/inf loss raises UserError.
    """
    cfg = resolve(method, config)
    if not records:
        from prunetune.errors import UserError

        raise UserError("no training records")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(
        work_dir=work_dir,
        metrics_path=Path(metrics_path) if metrics_path is not None else None,
        optimizer_state=optimizer_state,
        schedule=schedule,
        progress=progress,
        teacher=teacher,
        reward_funcs=reward_funcs,
    )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tuner = importlib.import_module(f"prunetune.recovery.{method}")
    return tuner.train(model, tokenizer, records, cfg, ctx)
