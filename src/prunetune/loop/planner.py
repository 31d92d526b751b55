"""The planner: a recipe checked and turned into per-iteration steps and the shapes they lead to.

No weights are needed, so `prunetune plan` can check a 70B recipe on a laptop. MLP neurons fill
whatever budget KV groups and layers leave, spread `equal`ly (the paper), `front_loaded` (every cut
removes the same fraction of the width that is left, so cuts shrink as the model gets tight) or
`cubic` (Zhu & Gupta's gradual-pruning curve: most of the cut early, almost nothing at the end).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from prunetune.checkpoint import model_config, resolve_model_path
from prunetune.data import check_source
from prunetune.errors import UserError
from prunetune.loop.allocations import Context
from prunetune.loop.evaluation import check_thinking_switch, gate_task_name, reward_task_name, task_options
from prunetune.loop.recipe import Recipe
from prunetune.models.shape import ModelShape
from prunetune.pruning.plan import Constraints, PruningPlan
from prunetune.pruning.prune import StepSpec, check_spec


@dataclass
class Step:
    """Amounts removed in one iteration (per layer for neurons and groups)."""

    mlp_neurons: int = 0
    kv_groups: int = 0
    layers: int = 0
    by_damage: bool = False
    """The MLP amount is decided when the step runs, by measured damage (schedule.shape: damage);
    `mlp_neurons` is then the plan's equal-split estimate, used for validation and display."""
    hidden: int = 0
    """Hidden channels (residual-stream width) removed in this step."""
    experts: int = 0
    expert_neurons: int = 0
    shared_expert_neurons: int = 0

    @property
    def moe(self) -> dict:
        return {"experts": self.experts, "expert_neurons": self.expert_neurons, "shared": self.shared_expert_neurons}

    def halves(self, round_to: int = 1) -> tuple[Step, Step] | None:
        """Split into two smaller steps with the same total (for the adaptive gate), or None if atomic.

        A step that removes whole layers or KV groups AND neurons is split by kind first, the
        structural part first: halving only the neurons would retry with the same layer still cut,
        and a whole layer costs far more than a few dozen neurons (bench/results/adaptive.md: three
        such retries in a row failed the gate). Then hidden channels apart from layers / groups, then
        layers / groups are halved, then neurons or channels (in multiples of round_to).
        """
        moe = self.experts or self.expert_neurons or self.shared_expert_neurons
        if moe and (self.mlp_neurons or self.kv_groups or self.layers):
            return (Step(0, self.kv_groups, self.layers, experts=self.experts),
                    Step(self.mlp_neurons, expert_neurons=self.expert_neurons,
                         shared_expert_neurons=self.shared_expert_neurons))
        if moe:
            e1, n1, s1 = self.experts // 2, self.expert_neurons // 2, self.shared_expert_neurons // 2
            if self.experts == 1 and (self.expert_neurons or self.shared_expert_neurons):
                e1, n1, s1 = 1, 0, 0
            if not (e1 or n1 or s1):
                return None
            return (Step(experts=e1, expert_neurons=n1, shared_expert_neurons=s1),
                    Step(experts=self.experts - e1, expert_neurons=self.expert_neurons - n1,
                         shared_expert_neurons=self.shared_expert_neurons - s1))
        if self.mlp_neurons and (self.kv_groups or self.layers or self.hidden):
            return (Step(0, self.kv_groups, self.layers, hidden=self.hidden), Step(self.mlp_neurons, 0, 0))
        if self.hidden and (self.kv_groups or self.layers):
            return (Step(0, self.kv_groups, self.layers), Step(hidden=self.hidden))
        if self.hidden:
            first = (self.hidden // 2) // round_to * round_to
            return (Step(hidden=first), Step(hidden=self.hidden - first)) if first else None
        if self.kv_groups >= 2 or self.layers >= 2:
            k1, l1 = self.kv_groups // 2, self.layers // 2
            return (Step(0, k1, l1), Step(0, self.kv_groups - k1, self.layers - l1))
        if self.kv_groups and self.layers:
            return (Step(0, 0, self.layers), Step(0, self.kv_groups, 0))
        units = self.mlp_neurons // round_to
        if units >= 2:
            first = (units // 2) * round_to
            return (Step(first, 0, 0), Step(self.mlp_neurons - first, 0, 0))
        return None

    def to_dict(self) -> dict:
        return asdict(self)


def constraints_of(recipe: Recipe) -> Constraints:
    return Constraints(round_to=recipe.schedule.round_to, tensor_parallel=recipe.schedule.tensor_parallel)


def _check_iterations(name: str, keys, k: int) -> None:
    bad = [i for i in keys if not 1 <= i <= k]
    if bad:
        raise UserError(f"schedule.{name}: iteration {bad[0]} is outside 1..{k} (iterations={k})")


def plan_steps(recipe: Recipe, shape: ModelShape) -> list[Step]:
    """Per-iteration amounts for the gradual run (one merged step when `one_shot`)."""
    s, k = recipe.schedule, recipe.iterations
    _check_iterations("kv_groups", s.kv_groups, k)
    _check_iterations("layers", s.layers, k)
    for key in ("experts", "expert_neurons", "shared_expert_neurons"):
        _check_iterations(key, getattr(s, key), k)
    _check_iterations("hidden", s.hidden, k)
    mlp_iters = s.mlp_iterations if s.mlp_iterations is not None else list(range(1, k + 1))
    _check_iterations("mlp_iterations", mlp_iters, k)
    kv_total, layers_total = sum(s.kv_groups.values()), sum(s.layers.values())
    if kv_total >= shape.num_key_value_heads:
        raise UserError(
            f"schedule.kv_groups removes {kv_total} of {shape.num_key_value_heads} KV groups: none would be left"
        )
    if layers_total >= shape.num_hidden_layers:
        raise UserError(
            f"schedule.layers removes {layers_total} of {shape.num_hidden_layers} layers: none would be left"
        )
    hidden_total = sum(s.hidden.values())
    if hidden_total >= shape.hidden_size:
        raise UserError(f"schedule.hidden removes {hidden_total} of {shape.hidden_size} hidden channels: none would be left")
    steps = [Step(0, s.kv_groups.get(i, 0), s.layers.get(i, 0), hidden=s.hidden.get(i, 0),
                  experts=s.experts.get(i, 0),
                  expert_neurons=s.expert_neurons.get(i, 0), shared_expert_neurons=s.shared_expert_neurons.get(i, 0))
             for i in range(1, k + 1)]
    fill = "expert_neurons" if shape.moe_layers else "mlp_neurons"  # the width target.keep spreads
    if shape.moe_layers and s.shape == "damage":
        raise UserError("schedule.shape damage: not supported for MoE models yet (use equal, front_loaded or cubic)")

    if recipe.target.keep is not None and not s.mlp_neurons_per_iteration and not recipe.one_shot:
        _check_mlp_cut(recipe, shape, fill, mlp_iters)
    if s.mlp_neurons_per_iteration:
        for i in mlp_iters:
            steps[i - 1].mlp_neurons = s.mlp_neurons_per_iteration
    elif recipe.target.keep is not None and mlp_iters:
        final_width = final_mlp_width(recipe, shape)
        spread = "equal" if s.shape == "damage" else s.shape
        start = _fill_width(_base(recipe, shape), fill)
        widths = _widths(start, final_width, len(mlp_iters), spread, s.round_to)
        for i, (w0, w1) in zip(mlp_iters, zip(widths, widths[1:])):
            setattr(steps[i - 1], fill, getattr(steps[i - 1], fill) + w0 - w1)
            steps[i - 1].by_damage = s.shape == "damage" and not recipe.one_shot
    if recipe.one_shot:
        steps = [Step(sum(x.mlp_neurons for x in steps), kv_total, layers_total, hidden=hidden_total,
                      **{key: sum(getattr(x, key) for x in steps)
                         for key in ("experts", "expert_neurons", "shared_expert_neurons")})]
    return steps


def _check_mlp_cut(recipe: Recipe, shape: ModelShape, fill: str, mlp_iters: list[int]) -> None:
    """target.keep met by the MLP (or expert) width: refuse a schedule that can never cut it."""
    start, final = _fill_width(_base(recipe, shape), fill), final_mlp_width(recipe, shape)
    if final >= start:
        return
    if not mlp_iters:
        raise UserError(f"schedule.mlp_iterations: [] cuts no MLP neurons, but target.keep={recipe.target.keep} "
                        f"needs the MLP width cut from {start} to {final}: name the iterations that cut it")


def _base(recipe: Recipe, shape: ModelShape) -> ModelShape:
    """The shape after every explicit structural cut in the schedule (what the width fill works on)."""
    s = recipe.schedule
    return shape.after(kv_groups_removed=sum(s.kv_groups.values()), layers_removed=sum(s.layers.values()),
                       hidden_removed=sum(s.hidden.values()), experts_removed=sum(s.experts.values()), shared_removed=sum(s.shared_expert_neurons.values()),
                       expert_neurons_removed=sum(s.expert_neurons.values()))


def _fill_width(shape: ModelShape, fill: str) -> int:
    return shape.moe_intermediate_size if fill == "expert_neurons" else shape.intermediate_size


def counted(shape: ModelShape, count: str = "total") -> int:
    """The non-embedding parameters target.keep counts: all of them, or those a token is routed through."""
    return shape.active_non_embedding_params() if count == "active" else shape.non_embedding_params()


def final_mlp_width(recipe: Recipe, shape: ModelShape) -> int:
    """The MLP width the run ends at (target.keep after the planned KV-group and layer cuts)."""
    fill = "expert_neurons" if shape.moe_layers else "mlp_neurons"
    return _width_for_target(shape, _base(recipe, shape), recipe.target.keep,
                             recipe.schedule.round_to, fill, recipe.target.count)


def _width_for_target(dense: ModelShape, base: ModelShape, keep: float, round_to: int,
                      fill: str = "mlp_neurons", count: str = "total") -> int:
    """Largest MLP (or expert) width, a multiple of round_to, whose counted parameters are <= keep * dense."""
    budget = keep * counted(dense, count)
    key = "expert_neurons_removed" if fill == "expert_neurons" else "mlp_removed"
    full = _fill_width(base, fill)
    fixed = counted(base.after(**{key: full}), count)
    per_neuron = (counted(base, count) - fixed) / max(full, 1)  # parameters are linear in the width
    width = int((budget - fixed) // per_neuron) // round_to * round_to if per_neuron else 0
    if width < round_to or width < 1:
        raise UserError(
            f"target.keep={keep} is impossible: even the narrowest MLP (width {round_to}) leaves "
            f"{int(fixed + per_neuron * round_to):,} non-embedding parameters > {int(budget):,}; keep more, or remove fewer layers/KV groups/hidden channels"
        )
    return min(width, full)


def _widths(start: int, end: int, n: int, shape: str, round_to: int) -> list[int]:
    """Widths after 0..n MLP iterations, each a multiple of round_to (the first may shed a remainder)."""
    total = start - end
    out = [start]
    for t in range(1, n + 1):
        if shape == "equal":
            w = start - round(t / n * total)
        elif shape == "cubic":
            w = start - round((1 - (1 - t / n) ** 3) * total)
        else:  # front_loaded: every cut removes the same fraction of what is left
            w = round(start * (end / start) ** (t / n))
        w = end + round((w - end) / round_to) * round_to if t < n else end
        out.append(min(out[-1], max(end, w)))
    return out


def validate_steps(shape: ModelShape, steps: list[Step], constraints: Constraints) -> list[ModelShape]:
    """Check every iteration's cut against the shape it meets (before anything runs)."""
    shapes = [shape]
    for i, st in enumerate(steps, 1):
        cur = shapes[-1]
        try:
            dry = PruningPlan.amounts(cur, mlp=st.mlp_neurons, kv=st.kv_groups, layers=st.layers, hidden=st.hidden,
                                      **st.moe)
            shapes.append(dry.validate(cur, constraints))
        except UserError as e:
            raise UserError(f"iteration {i}: {e}") from None
    return shapes


# ---------------------------------------------------------------------------------------------
def shape_of(recipe: Recipe) -> ModelShape:
    """The model's shape from its config alone (no weights)."""
    from transformers import AutoConfig

    if recipe.model_config:
        p = Path(recipe.model_config)
        if not p.is_file():
            raise UserError(f"model_config: '{recipe.model_config}' does not exist")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or "model_type" not in data:
                raise ValueError("no model_type")
            config = AutoConfig.for_model(data.pop("model_type"), **data)
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"model_config: '{p}' is not a model config.json ({str(e).splitlines()[0]})") from None
        return ModelShape.from_config(config)
    return ModelShape.from_config(model_config(recipe.model))


def step_spec(recipe: Recipe, step: Step) -> StepSpec:
    p = recipe.prune
    return StepSpec(
        mlp_neurons=step.mlp_neurons,
        kv_groups=step.kv_groups,
        layers=step.layers,
        mlp_importance=p.mlp_importance,
        kv_importance=p.kv_importance,
        layer_importance=p.layer_importance,
        mlp_options=p.mlp_options,
        kv_options=p.kv_options,
        layer_options=p.layer_options,
        layerwise=p.layerwise,
        experts=step.experts,
        expert_neurons=step.expert_neurons,
        shared_expert_neurons=step.shared_expert_neurons,
        expert_importance=p.expert_importance,
        expert_neuron_importance=p.expert_neuron_importance,
        hidden_channels=step.hidden,
        hidden_importance=p.hidden_importance,
        hidden_options=p.hidden_options,
    )


def validate_recipe(recipe: Recipe, *, for_run: bool = False) -> tuple[ModelShape, list[Step], list[ModelShape]]:
    """Every name, option and constraint checked before any weight is loaded; returns the planned shapes.

    Local files (model, data, calibration) and the software a run needs (vLLM) are checked only
    `for_run`: a paper-scale recipe must validate and plan on a machine that holds none of them.
    """
    from prunetune.recovery import check_environment, resolve_config, sharding
    from prunetune.tasks import get_task

    check_spec(step_spec(recipe, Step()))
    r = recipe.recovery
    if r.method != "none":
        cfg = resolve_config(r.method, r.config, "recovery.config")
        if (r.global_schedule or r.total_steps) and cfg.max_steps is None:
            raise UserError(
                "recovery.global_schedule and recovery.total_steps need recovery.config.max_steps "
                "(the steps chunk_size is sized for)"
            )
        r.allocator().check(Context(total_steps=r.total_steps, iterations=recipe.iterations, min_share=r.min_share,
                                    final_share=r.final_share, damage_sized=recipe.schedule.shape == "damage",
                                    global_schedule=r.global_schedule))
        if r.min_share and r.total_steps is None:
            raise UserError("recovery.min_share needs recovery.total_steps (the budget it is a share of)")
        if r.min_share * recipe.iterations >= 1:
            raise UserError(
                f"recovery.min_share={r.min_share} x iterations={recipe.iterations} leaves nothing to allocate "
                "(keep it below 1 / iterations)"
            )
        if r.final_share and r.total_steps is None:
            raise UserError("recovery.final_share needs recovery.total_steps (the budget it is a share of)")
        if r.min_share * (recipe.iterations - 1) + r.final_share >= 1:
            raise UserError(f"recovery.final_share={r.final_share} and min_share={r.min_share} leave nothing to "
                            "allocate: keep min_share x (iterations - 1) + final_share below 1")
    from prunetune.loop.teaching import check_recipe

    check_recipe(recipe, for_run=for_run)
    if recipe.schedule.shape == "damage" and (recipe.target.keep is None or recipe.schedule.mlp_neurons_per_iteration):
        raise UserError("schedule.shape damage needs target.keep (and no schedule.mlp_neurons_per_iteration)")
    if not recipe.evaluation.tasks:
        raise UserError("evaluation.tasks: give at least one task")
    tasks = [get_task(name, **task_options(recipe, name)) for name in recipe.evaluation.tasks]
    if r.method == "grpo":
        tasks.append(get_task(reward_task_name(recipe), **task_options(recipe, reward_task_name(recipe), reward=True)))
    gate_task = gate_task_name(recipe)
    if recipe.gate.max_drop is not None and gate_task not in recipe.evaluation.tasks:
        raise UserError(
            f"gate.task '{gate_task}' must be one of evaluation.tasks ({', '.join(recipe.evaluation.tasks)})"
        )
    if for_run:  # everything the run will read, read once now: nothing is written before it all holds
        from prunetune.data import calibration_texts, chunk
        from prunetune.io import check_output_path

        check_output_path(recipe.output_dir, "output_dir", may_exist=True)
        if recipe.evaluation.backend == "vllm":
            from prunetune.tasks.vllm_backend import vllm_python

            try:
                vllm_python()
            except UserError as e:
                raise UserError(f"evaluation.backend: {e}") from None
        if r.method != "none":
            try:
                check_environment(cfg)
            except UserError as e:
                raise UserError(f"recovery.config.{e}") from None
        resolve_model_path(recipe.model)
        check_thinking_switch(recipe, tasks)
        p = recipe.prune
        for key, source in (("prune.calibration", p.calibration), ("prune.general", p.general)):
            if source:
                check_source(source, key)
                calibration_texts(source, field=p.text_field, limit=p.calibration_samples)
        if r.method not in ("none", "grpo"):
            check_source(r.data, "recovery.data")
            chunk(r.data, 0, 1, seed=recipe.seed)
    shape = shape_of(recipe)
    if r.method != "none":  # from the config alone: still before any weights load
        sharding.check(cfg, carry_optimizer=r.carry_optimizer, for_run=for_run,
                       tied_embeddings=shape.tie_word_embeddings)
    steps = plan_steps(recipe, shape)
    shapes = validate_steps(shape, steps, constraints_of(recipe))
    return shape, steps, shapes
