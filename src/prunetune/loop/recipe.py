"""The recipe: what a Prune-Tune Loop run does, as typed sections loaded from YAML plus `key=value` overrides.

Every value is checked against its field's type and bounds when the recipe is loaded (prunetune.config),
names (scorers, recovery methods, tasks, their options) when it is validated, files when a run starts.
The resolved recipe is saved next to every run and a re-run is compared against it.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from prunetune.config import SEED_MAX, bounded, build, parse_overrides, read_yaml, to_dict
from prunetune.errors import UserError, did_you_mean
from prunetune.recovery.teacher_data import PromptsConfig, TeacherCorrectionConfig, TeacherDataConfig


@dataclass
class TargetConfig:
    keep: float | None = bounded(0.5, gt=0.0, lt=1.0)
    """Fraction of NON-EMBEDDING parameters to keep at the end (None: use explicit per-iteration amounts).
    MLP neurons fill the budget in a dense model, expert neurons (every expert's width) in a MoE model."""
    count: Literal["total", "active"] = "total"
    """MoE: `keep` counts all parameters (memory) | the parameters a token passes through (compute)."""


@dataclass
class ScheduleConfig:
    shape: Literal["equal", "front_loaded", "cubic", "damage"] = "equal"
    """How MLP removal is spread: equal (the paper) | front_loaded (same fraction of what is left each time) |
    cubic | damage (each cut the largest whose measured damage stays under max_damage; `iterations` caps
    the cuts, the last one takes whatever is left)."""
    max_damage: float = bounded(0.5, gt=0.0, le=1000.0)
    """shape damage: the largest rise of held-out next-token loss (nats/token) one MLP cut may cause."""
    held_out_samples: int = bounded(32, ge=1, le=100_000)
    """Held-out calibration texts damage is measured on (shape damage, recovery.total_steps)."""
    mlp_iterations: list[int] | None = None
    """1-based iterations in which MLP neurons are cut (default: every iteration)."""
    mlp_neurons_per_iteration: int | None = bounded(None, ge=1)
    """Explicit MLP neurons removed from every layer per MLP iteration (the paper: 1000); overrides target.keep."""
    kv_groups: dict[int, int] = field(default_factory=dict)
    """Iteration -> KV groups removed from every layer in it, e.g. {2: 1}."""
    layers: dict[int, int] = field(default_factory=dict)
    """Iteration -> whole layers removed in it (lowest-scoring), e.g. {4: 1}."""
    experts: dict[int, int] = field(default_factory=dict)
    """MoE: iteration -> routed experts removed from every MoE layer in it, e.g. {1: 16}."""
    expert_neurons: dict[int, int] = field(default_factory=dict)
    """MoE: iteration -> neurons removed from every routed expert in it (explicit; target.keep fills the rest)."""
    shared_expert_neurons: dict[int, int] = field(default_factory=dict)
    """MoE with a shared expert: iteration -> shared-expert neurons removed in it."""
    hidden: dict[int, int] = field(default_factory=dict)
    """Iteration -> hidden channels (residual-stream width) removed in it, e.g. {1: 128}."""
    round_to: int = bounded(1, ge=1, le=65536)
    """Every intermediate width along the way is a multiple of this (hardware-friendly shapes)."""
    tensor_parallel: int = bounded(1, ge=1, le=1024)
    """Heads, KV heads and MLP width must stay divisible by this."""

    def __post_init__(self):
        for key in ("kv_groups", "layers", "hidden", "experts", "expert_neurons", "shared_expert_neurons"):
            if any(v < 0 for v in getattr(self, key).values()):
                raise UserError(f"schedule.{key}: counts must not be negative, got {getattr(self, key)}")


@dataclass
class PruneConfig:
    mlp_importance: str = "activation"
    """MLP scorer (`prunetune ls -v` lists them with their options)."""
    mlp_options: dict = field(default_factory=dict)
    """Options of the MLP scorer, e.g. {order: index, top_n: 0.85} for ptl."""
    kv_importance: str = "activation"
    """KV-group scorer."""
    kv_options: dict = field(default_factory=dict)
    """Options of the KV-group scorer."""
    layer_importance: str = "block_influence"
    """Layer scorer (lower = more redundant)."""
    layer_options: dict = field(default_factory=dict)
    """Options of the layer scorer."""
    layerwise: bool = False
    """Score one decoder layer at a time on the GPU (the model stays on CPU): one layer plus the
    calibration activations in accelerator memory, same scores; forward scorers only (not taylor, skip_loss)."""
    expert_importance: str = "reap"
    """MoE expert scorer: reap | frequency | random."""
    expert_neuron_importance: str = "activation"
    """MoE expert-neuron (and shared-expert-neuron) scorer: activation | random."""
    hidden_importance: str = "activation"
    """Hidden-channel scorer (schedule.hidden)."""
    hidden_options: dict = field(default_factory=dict)
    """Options of the hidden-channel scorer, e.g. {site: residual}."""
    calibration: str = "arith"
    """Reasoning calibration text: a registered text source (built in: arith) or a local JSONL/txt/parquet/datasets path."""
    general: str | None = None
    """General text protected by the ptl scorer (local file), optional."""
    text_field: str = "text"
    """Record field holding the calibration text."""
    calibration_samples: int = bounded(64, ge=1, le=1_000_000)
    """Calibration texts scored per iteration."""
    max_length: int = bounded(256, ge=2, le=1_048_576)
    """Tokens per calibration text."""


@dataclass
class RecoveryConfig:
    method: str = "cpt"
    """cpt | sft | distill | onpolicy | grpo | none (`prunetune ls -v` lists each method's config keys)."""
    data: str = "arith"
    """Training data: a registered text source (built in: arith) or a local file; iteration i takes chunk i."""
    chunk_size: int = bounded(512, ge=1, le=100_000_000)
    """Records per iteration's chunk (fresh and disjoint across iterations, as in the paper)."""
    teacher: Literal["dense", "previous"] = "dense"
    """distill and onpolicy: dense (the original model, every iteration) | previous (the model before this
    iteration's cut). Dense scored 0.832 vs 0.736 on the reference (bench/results/gradual_vs_oneshot.md)
    at the same peak memory: iteration 1's teacher is the uncut model either way."""
    reward_task: str | None = None
    """grpo only: the task whose score is the reward (default: the gate / first evaluation task)."""
    reward_task_options: dict = field(default_factory=dict)
    """grpo only: options for the reward task (e.g. {data: math_train.jsonl}); default: its evaluation options."""
    correctness_weight: float = bounded(0.9, ge=0.0)
    """grpo only: weight of the task score in the reward."""
    format_weight: float = bounded(0.1, ge=0.0)
    """grpo only: weight of the task's format check in the reward."""
    carry_optimizer: bool = False
    """Carry AdamW moments across iterations (sliced with the pruned units) instead of a fresh optimizer."""
    global_schedule: bool = False
    """One learning-rate schedule (single warm-up) across all iterations instead of one per iteration."""
    total_steps: int | None = bounded(None, ge=1, le=1_000_000_000)
    """The run's whole recovery budget in optimizer steps, allocated per iteration by `allocation`; the
    last iteration gets what is left. config.max_steps / chunk_size then only say how many records a step
    takes (chunk_size / max_steps). One-shot spends it in its one recovery."""
    allocation: str = "damage"
    """With total_steps, how the budget is spent over the cuts: damage (in proportion to each cut's measured
    damage) | equal | geometric | recovered | split (`prunetune ls -v` lists them with their options)."""
    allocation_options: dict = field(default_factory=dict)
    """Options of the allocation, e.g. {growth: 3} for geometric, {tolerance: 0.02, check_every: 5} for
    recovered, {steps: [5, 10, 25, 80]} for split (the flat keys recovery.growth, tolerance, check_every
    and split of older recipes still load)."""
    final_share: float = bounded(0.0, ge=0.0, lt=1.0)
    """With total_steps: the share of the whole budget kept for the last iteration (the final polish),
    the rest allocated over the cuts; min_share x (iterations - 1) + final_share must stay below 1."""
    min_share: float = bounded(0.0, ge=0.0, lt=1.0)
    """With total_steps: the least share of the whole budget any iteration gets (e.g. 0.1), so middle cuts
    are not starved by the larger damage still to come; iterations x min_share must stay below 1."""
    config: dict = field(default_factory=dict)
    """The method's own config (max_steps, learning_rate, ...; `prunetune ls -v` lists the keys)."""
    prompts: PromptsConfig | None = None
    """{sources, ...}: prompts for teacher_data or method onpolicy (instead of recovery.data's records)."""
    teacher_data: TeacherDataConfig | None = None
    """{rejection, max_new_tokens, ...}: sequence-level distillation: the dense model's own solutions to
    recovery.prompts are the recovery records (method sft, or distill with format prompt_completion);
    generated once per run into teacher_data.jsonl in the run directory, reused on resume."""
    teacher_correction: TeacherCorrectionConfig | None = None
    """{method, data, records, config}: fine-tune the dense teacher briefly before it generates or
    supervises (Minitron's teacher correction); once per run, kept in the run directory."""

    def __post_init__(self):
        from prunetune.loop.allocations import ALLOCATIONS, options_dict

        try:
            ALLOCATIONS.entry(self.allocation)
        except UserError as e:
            raise UserError(f"recovery.allocation: {e}") from None
        self.allocation_options = options_dict(self.allocation, self.allocation_options)

    def allocator(self):
        """The allocation this section names, built with its options (loop/allocations/)."""
        from prunetune.loop.allocations import build_allocation

        return build_allocation(self.allocation, self.allocation_options)

    @staticmethod
    def upgrade_keys(data: dict, path: str) -> dict:
        """Recipes before allocations were registered wrote their options flat in this section: each
        moves into allocation_options when it belongs to the chosen allocation; one that belongs to
        another is dropped at its default (older versions saved them all), an error otherwise."""
        from prunetune.config import coerce_field, parse_scalar
        from prunetune.loop.allocations import ALLOCATIONS

        name = str(data.get("allocation") or "damage").strip()
        for key, (owner, option) in FLAT_ALLOCATION_KEYS.items():
            if key not in data:
                continue
            raw, full = data.pop(key), f"{path}.{key}" if path else key
            cls = ALLOCATIONS.entry(owner).options
            value = None if raw is None else coerce_field(cls, option, raw, full)
            if name != owner:
                if value is None or value == cls.__dataclass_fields__[option].default:
                    continue
                if key == "split":
                    raise UserError("recovery.split and recovery.allocation: split go together")
                raise UserError(f"{full} is an option of recovery.allocation: {owner}, not of {name}")
            options = data.get("allocation_options") or {}
            options = dict(parse_scalar(options) or {} if isinstance(options, str) else options)
            if option in options:
                raise UserError(f"{full}: also given as {path}.allocation_options.{option}; keep one")
            data["allocation_options"] = {**options, option: value}
        return data


FLAT_ALLOCATION_KEYS = {"growth": ("geometric", "growth"), "tolerance": ("recovered", "tolerance"),
                         "check_every": ("recovered", "check_every"), "split": ("split", "steps"),
                         "probe_steps": ("probe", "probe_steps"), "probe_measure": ("probe", "probe_measure")}
"""The one place that knows the flat keys of older recipes: recovery.<key> -> (allocation, option)."""


@dataclass
class EvalConfig:
    tasks: list[str] = field(default_factory=lambda: ["arith"])
    """Tasks evaluated after every iteration (the first one is gated unless gate.task says otherwise)."""
    limit: int | None = bounded(200, ge=1)
    """Examples per task."""
    max_new_tokens: int = bounded(512, ge=1, le=1_048_576)
    """Generation budget per completion."""
    batch_size: int = bounded(32, ge=1, le=65536)
    """Prompts generated together."""
    after_prune: bool = False
    """Also evaluate right after each cut, before recovery (shows the damage recovery has to undo)."""
    backend: Literal["hf", "vllm"] = "hf"
    """Generation backend: hf (transformers' generate, in process) | vllm (the model saved and served by
    vLLM in its own process; PRUNETUNE_VLLM_PYTHON names a Python that has vLLM)."""
    task_options: dict[str, dict] = field(default_factory=dict)
    """Per-task constructor options, e.g. {gsm8k: {data: data/gsm8k.jsonl}}."""
    think: Literal["auto", "none"] | list[str] = "auto"
    """Reasoning-trace delimiters [start, end] for every math and code task (and the GRPO reward task):
    answers are read after the trace, an unclosed trace is wrong | auto: the chat template's | none.
    A task's own task_options.think wins."""
    enable_thinking: bool | None = None
    """The chat template's thinking switch (Qwen3, SmolLM3) for every task that uses the template;
    null: the template's default. An error for a template without it."""

    def __post_init__(self):
        if isinstance(self.think, list):
            from prunetune.tasks.thinking import check_delimiters

            check_delimiters(self.think, "evaluation.think")


@dataclass
class GateConfig:
    max_drop: float | None = bounded(None, ge=0.0, le=1.0)
    """Largest allowed accuracy drop (absolute, e.g. 0.05) after recovery; None disables the gate."""
    against: Literal["dense", "previous"] = "dense"
    """dense (the baseline) | previous (the last accepted iteration)."""
    task: str | None = None
    """Task whose accuracy is gated (default: the first evaluation task)."""
    on_violation: Literal["stop", "rollback"] = "rollback"
    """stop | rollback (restore the previous checkpoint and retry with half the step)."""
    max_retries: int = bounded(3, ge=0, le=100)
    """Rollbacks allowed in a row before the run stops."""


@dataclass
class ExportConfig:
    keeps: list[float] = field(default_factory=list)
    """Sizes (fractions of the non-embedding parameters kept) at which the run also writes a servable
    checkpoint, family/keep_<size>/: the first accepted iteration at or below each size. `prunetune pick`
    chooses among them."""

    def __post_init__(self):
        bad = [k for k in self.keeps if not 0.0 < k < 1.0]
        if bad:
            raise UserError(f"export.keeps: every size must be in (0, 1), got {bad[0]}")
        self.keeps = sorted(set(self.keeps), reverse=True)
        names = [f"{k:.2f}" for k in self.keeps]
        twice = [n for n in names if names.count(n) > 1]
        if twice:
            raise UserError(f"export.keeps: two sizes would both be written as family/keep_{twice[0]}; keep one")


@dataclass
class Recipe:
    model: str = "reference"
    """A checkpoint directory, or a built-in model name (`prunetune ls`: reference, tiny-random-<family>)."""
    output_dir: str = "runs/run"
    """Where the run writes its iterations, metrics and report."""
    seed: int = bounded(0, ge=0, le=SEED_MAX)
    """Seed for calibration and recovery data, sampling and initialisation."""
    iterations: int = bounded(4, ge=1, le=1000)
    """Prune-recover iterations."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Weights' dtype while the run works on them."""
    one_shot: bool = False
    """Spend the same total pruning and recovery budget in ONE prune + ONE recovery (the Prune-Once baseline)."""
    keep: Literal["all", "last", "best"] = "all"
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
    export: ExportConfig = field(default_factory=ExportConfig)

    def __post_init__(self):
        low = [k for k in self.export.keeps if self.target.keep is not None and k < self.target.keep - 0.01]
        if low:
            raise UserError(f"export.keeps: {low[0]} is below target.keep={self.target.keep}, where the run stops: "
                            "that member would never be written")
        total, allocation = self.recovery.total_steps, self.recovery.allocation
        if total is None and allocation != "damage":  # damage, the default, spends nothing when it is unset
            raise UserError(f"recovery.allocation: {allocation} needs recovery.total_steps (the run's whole "
                            "budget to spend), which is not set")
        if total is not None and not self.one_shot and total < self.iterations:
            raise UserError(f"recovery.total_steps={total} is fewer than iterations={self.iterations}: "
                            "some iteration would get no recovery step")

    def to_dict(self) -> dict:
        return to_dict(self)


# ---------------------------------------------------------------------------------------------
def shipped_recipes() -> dict[str, Path]:
    """The recipes that ship inside the package, by name (`demo`, `smoke`, ...)."""
    root = importlib.resources.files("prunetune") / "recipes"
    return {Path(str(p)).stem: Path(str(p)) for p in root.iterdir() if str(p).endswith(".yaml")}


def recipe_path(spec: str | Path) -> Path:
    """A recipe file, or the name of a shipped recipe (`prunetune run demo`)."""
    p = Path(spec)
    if p.is_file():
        return p
    shipped = shipped_recipes()
    if str(spec) in shipped:
        return shipped[str(spec)]
    if p.suffix in (".yaml", ".yml") or p.parent != Path("."):
        raise UserError(f"recipe file '{spec}' does not exist")
    raise UserError(
        f"unknown recipe '{spec}'{did_you_mean(str(spec), shipped)}; give a YAML file or one of {', '.join(sorted(shipped))}"
    )


def load_recipe(path: str | Path | None, overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe (a path or a shipped name; defaults when None) and apply `key=value` overrides."""
    data = read_yaml(recipe_path(path)) if path is not None else {}
    recipe = build(Recipe, parse_overrides(overrides or [], base=data))
    if path is not None and recipe.model_config and not Path(recipe.model_config).is_file():
        beside = recipe_path(path).parent / recipe.model_config  # shipped recipes name configs beside them
        if beside.is_file():
            recipe.model_config = str(beside)
    return recipe


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)
