"""Recipes: typed dataclass groups loaded from YAML plus `key=value` overrides, with errors naming the key.

One override syntax everywhere: `prunetune run recipe.yaml output_dir=runs/x iterations=2
recovery.config.max_steps=10`. Values are parsed as YAML scalars. The resolved recipe is saved next to
every run, and a re-run is compared against it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from prunetune.errors import UserError, did_you_mean


@dataclass
class TargetConfig:
    keep: float | None = 0.5
    """Fraction of NON-EMBEDDING parameters to keep at the end (None: use explicit per-iteration amounts)."""

    def __post_init__(self):
        if self.keep is not None and not 0 < self.keep < 1:
            raise UserError(f"target.keep must be in (0, 1), got {self.keep}")


@dataclass
class ScheduleConfig:
    shape: str = "equal"
    """How MLP removal is spread: equal (the paper) | front_loaded (same fraction of what is left each time) | cubic."""
    mlp_iterations: list[int] | None = None
    """1-based iterations in which MLP neurons are cut (default: every iteration)."""
    mlp_neurons_per_iteration: int | None = None
    """Explicit MLP neurons removed from every layer per MLP iteration (the paper: 1000); overrides target.keep."""
    kv_groups: dict[int, int] = field(default_factory=dict)
    """Iteration -> KV groups removed from every layer in it, e.g. {2: 1}."""
    layers: dict[int, int] = field(default_factory=dict)
    """Iteration -> whole layers removed in it (lowest-scoring), e.g. {4: 1}."""
    round_to: int = 1
    """Every intermediate width along the way is a multiple of this (hardware-friendly shapes)."""
    tensor_parallel: int = 1
    """Heads, KV heads and MLP width must stay divisible by this."""

    def __post_init__(self):
        shapes = ("equal", "front_loaded", "cubic")
        if self.shape not in shapes:
            raise UserError(
                f"schedule.shape must be one of {', '.join(shapes)}, got '{self.shape}'{did_you_mean(self.shape, shapes)}"
            )
        for key in ("kv_groups", "layers"):
            d = getattr(self, key)
            if not isinstance(d, dict):
                raise UserError(f"schedule.{key} must map iteration -> count, e.g. {{2: 1}}")
            try:
                setattr(self, key, {int(k): int(v) for k, v in d.items()})
            except (TypeError, ValueError):
                raise UserError(
                    f"schedule.{key} must map iteration -> count with integers, e.g. {{2: 1}} (a space after "
                    f"the colon), got {d}"
                ) from None
        if self.round_to < 1 or self.tensor_parallel < 1:
            raise UserError("schedule.round_to and schedule.tensor_parallel must be >= 1")


@dataclass
class PruneConfig:
    mlp_importance: str = "activation"
    """MLP scorer: ptl | activation | taylor | magnitude | random."""
    kv_importance: str = "activation"
    layer_importance: str = "block_influence"
    ptl_order: str = "rank"
    """For ptl: rank candidates by activation (rank) or take them by index like the reference code (index)."""
    calibration: str = "arith"
    """Reasoning calibration text: 'arith' (built-in) or a local JSONL/txt/parquet/datasets path."""
    general: str | None = None
    """General text protected by the ptl scorer (local file), optional."""
    text_field: str = "text"
    calibration_samples: int = 64
    max_length: int = 256


@dataclass
class RecoveryConfig:
    method: str = "cpt"
    """cpt | sft | distill | grpo | none."""
    data: str = "arith"
    """Training data: 'arith' (built-in generator) or a local file; iteration i takes chunk i."""
    chunk_size: int = 512
    """Records per iteration's chunk (fresh and disjoint across iterations, as in the paper)."""
    teacher: str = "dense"
    """distill only: dense (the original model, every iteration) | previous (the model before this
    iteration's cut). Dense scored 0.832 vs 0.736 on the reference (bench/results/gradual_vs_oneshot.md)
    at the same peak memory: iteration 1's teacher is the uncut model either way."""
    reward_task: str | None = None
    """grpo only: the task whose score is the reward (default: the gate / first evaluation task)."""
    reward_task_options: dict = field(default_factory=dict)
    """grpo only: options for the reward task (e.g. {data: math_train.jsonl}); default: its evaluation options."""
    correctness_weight: float = 0.9
    format_weight: float = 0.1
    carry_optimizer: bool = False
    """Carry AdamW moments across iterations (sliced with the pruned units) instead of a fresh optimizer."""
    global_schedule: bool = False
    """One learning-rate schedule (single warm-up) across all iterations instead of one per iteration."""
    config: dict = field(default_factory=dict)
    """The tuner's own config (max_steps, learning_rate, ...; see `prunetune recover --help`)."""

    def __post_init__(self):
        if self.teacher not in ("previous", "dense"):
            raise UserError(f"recovery.teacher must be previous or dense, got '{self.teacher}'")
        if self.chunk_size <= 0:
            raise UserError("recovery.chunk_size must be positive")


@dataclass
class EvalConfig:
    tasks: list[str] = field(default_factory=lambda: ["arith"])
    limit: int | None = 200
    max_new_tokens: int = 512
    batch_size: int = 32
    after_prune: bool = False
    """Also evaluate right after each cut, before recovery (shows the damage recovery has to undo)."""
    task_options: dict[str, dict] = field(default_factory=dict)
    """Per-task constructor options, e.g. {gsm8k: {path: data/gsm8k.jsonl}}."""

    def __post_init__(self):
        if isinstance(self.tasks, str):
            self.tasks = [t.strip() for t in self.tasks.split(",") if t.strip()]
        if self.limit is not None and self.limit <= 0:
            raise UserError(f"evaluation.limit must be positive, got {self.limit}")


@dataclass
class GateConfig:
    max_drop: float | None = None
    """Largest allowed accuracy drop (absolute, e.g. 0.05) after recovery; None disables the gate."""
    against: str = "dense"
    """dense (the baseline) | previous (the last accepted iteration)."""
    task: str | None = None
    """Task whose accuracy is gated (default: the first evaluation task)."""
    on_violation: str = "rollback"
    """stop | rollback (restore the previous checkpoint and retry with half the step)."""
    max_retries: int = 3

    def __post_init__(self):
        if self.against not in ("dense", "previous"):
            raise UserError(f"gate.against must be dense or previous, got '{self.against}'")
        if self.on_violation not in ("stop", "rollback"):
            raise UserError(f"gate.on_violation must be stop or rollback, got '{self.on_violation}'")


@dataclass
class Recipe:
    model: str = "reference"
    """A checkpoint directory, or built-in: reference | tiny-random-<family>."""
    output_dir: str = "runs/run"
    seed: int = 0
    iterations: int = 4
    dtype: str = "float32"
    one_shot: bool = False
    """Spend the same total pruning and recovery budget in ONE prune + ONE recovery (the Prune-Once baseline)."""
    keep: str = "all"
    """Which iteration checkpoints to keep on disk: all | last | best."""
    model_config: str | None = None
    """A config.json giving the model's shape for `prunetune plan` when the weights are not here."""
    compare_with: str | None = None
    """Another run directory (e.g. the one-shot baseline) drawn on the same report axes."""
    target: TargetConfig = field(default_factory=TargetConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    gate: GateConfig = field(default_factory=GateConfig)

    def __post_init__(self):
        if self.iterations < 1:
            raise UserError(f"iterations must be >= 1, got {self.iterations}")
        if self.keep not in ("all", "last", "best"):
            raise UserError(f"keep must be all, last or best, got '{self.keep}'")
        if self.dtype not in ("float32", "bfloat16"):
            raise UserError(f"dtype must be float32 or bfloat16, got '{self.dtype}'")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
def _build(cls, data: Any, path: str):
    """Instantiate dataclass `cls` from a mapping, rejecting unknown keys with the full key path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"recipe key '{path or 'top level'}' must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in fields:
            raise UserError(f"unknown recipe key '{full}'{did_you_mean(key, fields)}")
        sub = fields[key].type
        sub_cls = _SECTIONS.get(key) if not path else None
        if sub_cls is not None:
            kwargs[key] = _build(sub_cls, value, full)
        else:
            kwargs[key] = value
        del sub
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise UserError(f"recipe section '{path or 'top level'}': {e}") from None


_SECTIONS = {
    "target": TargetConfig,
    "schedule": ScheduleConfig,
    "prune": PruneConfig,
    "recovery": RecoveryConfig,
    "evaluation": EvalConfig,
    "gate": GateConfig,
}


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """`a.b.c=value` pairs into the nested mapping (values parsed as YAML)."""
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override '{item}' must look like key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if node.get(p) is None:
                node[p] = {}
            if not isinstance(node[p], dict):
                raise UserError(f"override '{key}': '{p}' is not a section")
            node = node[p]
        node[parts[-1]] = value
    return data


def load_recipe(path: str | Path | None, overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe (or start from defaults when `path` is None) and apply overrides."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"recipe file '{path}' does not exist")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise UserError(f"recipe '{path}' is not valid YAML{where}") from None
        if not isinstance(data, dict):
            raise UserError(f"recipe '{path}' must be a mapping of keys")
    apply_overrides(data, overrides or [])
    return _build(Recipe, data, "")


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)
