"""Recovery after pruning: cpt, sft, distill, onpolicy and grpo as thin layers over transformers / trl / peft.

`recover()` is the one entry point: it checks the config, hands the model to the chosen tuner and
returns the trained model with its metrics and (for carrying) its AdamW state. It writes nothing
outside `work_dir` except the caller's `metrics_path`. A tuner is a function registered in TUNERS
with its config dataclass (trainer.py); `prunetune ls -v` lists each one's keys.
"""

from __future__ import annotations

from pathlib import Path

from prunetune.config import build, describe
from prunetune.errors import UserError
from prunetune.recovery import cpt, distill, grpo, onpolicy, sft  # noqa: F401  (register the tuners)
from prunetune.recovery.schedule import GlobalSchedule
from prunetune.recovery.trainer import TUNERS, CommonConfig, Context, Diverged, RecoveryResult
from prunetune.recovery.until import StopWhen

__all__ = [
    "TUNERS", "Diverged", "GlobalSchedule", "RecoveryResult", "StopWhen", "check_environment", "config_keys", "recover", "resolve_config",
]


def resolve_config(method: str, config: dict | CommonConfig | None, key: str = "config") -> CommonConfig:
    """`method`'s config with every default filled in; an unknown method or key, or a bad value, names it."""
    entry = TUNERS.entry(method)
    if isinstance(config, entry.options):
        return config
    config = dict(config or {})
    cfg = build(entry.options, config, key)
    if cfg.lora is not None and "learning_rate" not in config:
        cfg.learning_rate = 2e-4
    return cfg


def check_environment(cfg: CommonConfig) -> None:
    """A one-line UserError when this Python lacks what `cfg` needs to run (e.g. vLLM for grpo's use_vllm).

    Checked when a run starts, not when a recipe validates: a paper-scale recipe validates and plans on a
    machine that has neither its data nor its GPU stack.
    """
    check = getattr(cfg, "check_environment", None)
    if check is not None:
        check()


def config_keys(method: str) -> dict[str, str]:
    """Documented keys of `method`'s config: name -> help."""
    return {name: doc for name, _, doc in describe(TUNERS.entry(method).options)}


def recover(
    model,
    tokenizer,
    method: str,
    records: list[dict],
    config: dict | CommonConfig | None,
    *,
    teacher=None,
    reward_funcs=None,
    work_dir: str | Path,
    metrics_path: str | Path | None = None,
    optimizer_state: dict | None = None,
    schedule: GlobalSchedule | None = None,
    progress: bool = True,
    stop: StopWhen | None = None,
) -> RecoveryResult:
    """Train `model` (in place where possible) with tuner `method` on `records`; see config_keys(method).

    `schedule` makes this call one slice of a learning-rate schedule spanning all loop iterations;
    `optimizer_state` ({param_name: {exp_avg, exp_avg_sq, step}}) resumes AdamW from the previous call
    (entries whose parameter was pruned away or resized are skipped). A NaN/inf loss raises UserError.
    `stop` ends training before max_steps at the first of its checks that passes (recovery/until.py).
    """
    cfg = resolve_config(method, config)
    check_environment(cfg)
    if not records:
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
        stop=stop,
    )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return TUNERS.get(method)(model, tokenizer, records, cfg, ctx)
