"""The Prune-Tune Loop: prune -> recover -> evaluate -> gate -> accept or roll back, one iteration at a time.

`Loop.run` reads top to bottom; the recipe is checked and planned in planner.py, and everything the run
writes (and how it resumes) is rundir.py's. A gate violation either stops the run or rolls back to the
previous checkpoint and retries with half the step: the water never heats faster than the frog can take.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

from prunetune import dist
from prunetune.checkpoint import count_params, load_model
from prunetune.loop import family, gate, teaching
from prunetune.loop.allocations import LOSS, REST, Budget, StopAt
from prunetune.loop.budget import choose_cut, future_cuts, records_for
from prunetune.loop.evaluation import evaluate_recipe, grpo_data
from prunetune.loop.measures import Measures
from prunetune.loop.planner import (
    Step,
    constraints_of,
    final_mlp_width,
    step_spec,
    validate_recipe,
)
from prunetune.loop.recipe import Recipe, dump_recipe
from prunetune.loop.rundir import LoopState, RunDir, crash_point, shape_fields
from prunetune.models.shape import ModelShape
from prunetune.pruning.damage import held_out_loss

log = logging.getLogger("prunetune.loop")


@dataclass
class Measured:
    """What deciding a damage-sized step computed on the model it is then cut from (reused by the cut)."""

    batches: list
    general: list | None
    scores: object
    before: float


@dataclass
class Cut:
    """One iteration's cut as `_prune` made it: what the budget and `_recover` read."""

    plan: object
    """The PruningPlan applied (its meta names the iteration)."""
    optimizer_state: dict | None
    """The carried AdamW moments sliced with the cut units (None: a fresh optimizer)."""
    before: float | None = None
    """Held-out loss before the cut (None: the allocation reads no damage, so it was not measured)."""
    after: float | None = None
    """Held-out loss after the cut."""
    rest: float | None = None
    """Damage of removing at once, from the model as cut, what the later cuts will remove (allocations that read it)."""

    @property
    def damage(self) -> float | None:
        return self.after - self.before if self.before is not None and self.after is not None else None


class Loop:
    def __init__(self, recipe: Recipe, *, restart: bool = False, progress: bool = True):
        self.recipe = recipe
        self.progress = progress
        self.dense_shape, self.steps, _ = validate_recipe(recipe, for_run=True)
        self.rundir = RunDir(recipe.output_dir, dump_recipe(recipe), restart=restart)
        self.damage_mode = any(s.by_damage for s in self.steps)
        self.allocation = recipe.recovery.allocator()
        spends = recipe.recovery.total_steps is not None
        self.measures_damage = self.damage_mode or (spends and not recipe.one_shot and LOSS in self.allocation.measures)
        self.measures_rest = spends and REST in self.allocation.measures
        self.final_width = final_mlp_width(recipe, self.dense_shape) if recipe.target.keep is not None else None
        self.measures = Measures(recipe)  # the damage measures' inputs, built once per run on first use
        self._records = None  # recovery records made once per run (teacher solutions, prompts), else None

    def run(self) -> dict:
        recipe = self.recipe
        dist.init_if_needed()
        model, tok = load_model(recipe.model, recipe.dtype)  # the last input read before the first write
        with self.rundir.claimed() as rd:
            log.info("run %s -> %s (%s)", recipe.model, rd.out, "one-shot" if recipe.one_shot else f"{len(self.steps)} iterations")
            cache = teaching.run_cache(recipe, rd.out)  # a corrupt or mismatched cache fails before any work
            baseline = rd.baseline() or rd.save_baseline(
                model, self._evaluate(model, tok, rd.work("baseline_eval")), rd.work("baseline_eval"), self.dense_shape
            )
            resumed = rd.resume(recipe.dtype, chunk_size=recipe.recovery.chunk_size)
            if resumed:
                state, model, tok, opt = resumed.state, resumed.model, resumed.tokenizer, resumed.optimizer_state
                history, last_metrics = resumed.history, resumed.metrics
                family.export(rd.out, rd.iteration_dirs()[-1], recipe.export.keeps)  # one a kill interrupted
            else:
                state, history, opt = LoopState(queue=[s.to_dict() for s in self.steps]), [], None
                last_metrics = baseline["metrics"]
            dense_teacher = self._teaching(tok, rd.out, cache)
            bar = self._bar(state)
            while state.queue and state.stopped_reason is None:
                iteration = state.completed + 1
                step, measured = self._next_step(model, tok, state)
                if step is None:  # a damage-sized schedule reached its target early: nothing left to cut here
                    state.queue.pop(0)
                    continue
                teacher = self._teacher(model, dense_teacher)
                cut = self._prune(model, tok, step, iteration, opt, state, measured)
                model, opt, steps, diverged = self._recover(model, tok, state, teacher, cut, iteration)
                del teacher
                if diverged:  # a smaller cut does not cure a learning rate: stop, the last accepted model stays
                    state.stopped_reason = f"recovery diverged in iteration {iteration}: {diverged}"
                    rd.metric({"event": "diverged", "iteration": iteration, "reason": diverged})
                    break
                metrics = self._evaluate(model, tok, rd.work(f"eval_{iteration:02d}", clear=True))
                rd.metric({"event": "eval", "iteration": iteration, **shape_fields(model), **count_params(model),
                           "metrics": metrics, "recovery_steps": state.recovery_steps, "tokens": state.tokens})
                verdict = gate.verdict(recipe, metrics, baseline["metrics"], last_metrics)
                if verdict is not None:
                    rd.metric({"event": "gate", "iteration": iteration, "violation": verdict, "step": step.to_dict()})
                    log.info("iteration %d: gate violated (%s)", iteration, verdict)
                    if gate.retry_smaller(recipe, state, step):
                        bar.total += 1
                        model, tok, opt = rd.restore(recipe.model, recipe.dtype)
                        continue
                    state.stopped_reason = f"gate violated at iteration {iteration}: {verdict}"
                    break
                state.queue.pop(0)
                state.completed, state.retries = iteration, 0
                state.accepted_recovery_steps += steps
                history = history + [cut.plan.to_dict()]
                saved = rd.save_iteration(model, tok, iteration, history, metrics, state, opt, rd.work(f"eval_{iteration:02d}"))
                family.export(rd.out, saved, recipe.export.keeps)
                rd.apply_keep_policy(recipe.keep, gate.best_iteration(recipe, rd.iteration_metrics()))
                last_metrics = metrics
                _log_accepted(iteration, model, metrics)
                bar.update(1)
            bar.close()
            return rd.finish(model=recipe.model, one_shot=recipe.one_shot, baseline=baseline, state=state,
                             planned_iterations=len(self.steps))

    # ---- the steps ---------------------------------------------------------------------------
    def _next_step(self, model, tok, state: LoopState) -> tuple[Step | None, Measured | None]:
        """The step at the head of the queue, its MLP amount decided now if it goes by damage (then
        written back to the queue, so a resume or a rollback's halves use the decided amount), and what
        deciding it measured (its cut reuses it). (None, None): nothing left to cut in this iteration."""
        from prunetune.pruning.damage import candidate_cuts, mlp_cut_losses
        from prunetune.pruning.importance import score_mlp

        step = Step(**state.queue[0])
        if not step.by_damage:
            return step, None
        p, s = self.recipe.prune, self.recipe.schedule
        remaining = ModelShape.from_config(model.config).intermediate_size - self.final_width
        last = not any(Step(**q).by_damage for q in state.queue[1:])
        candidates = ([remaining] if last else candidate_cuts(remaining, s.round_to)) if remaining > 0 else []
        chosen, damage, losses, measured = 0, 0.0, [], None
        if candidates:
            batches, general = self._calibration(tok, state.completed + 1)
            scores = score_mlp(model, p.mlp_importance, batches, general_batches=general, seed=self.recipe.seed,
                               progress=False, options=p.mlp_options, layerwise=p.layerwise)
            held_out = self.measures.held_out(tok)
            before = held_out_loss(model, held_out)
            losses = mlp_cut_losses(model, scores, candidates, held_out)
            chosen, damage = choose_cut(candidates, losses, before, s.max_damage)
            measured = Measured(batches, general, scores, before)  # the cut's pruning reuses them
        step = Step(chosen, step.kv_groups, step.layers, hidden=step.hidden)
        if candidates:
            self.rundir.metric({"event": "damage_plan", "iteration": state.completed + 1, "remaining": remaining,
                                "candidates": [{"mlp_neurons": k, "loss": round(v, 5)} for k, v in zip(candidates, losses)],
                                "chosen": chosen, "expected_damage": round(damage, 5)})
        state.queue[0] = step.to_dict()
        return (step, measured) if step.mlp_neurons or step.kv_groups or step.layers or step.hidden else (None, None)

    def _rest_damage(self, model, tok, batches, general, now: float) -> float:
        """The damage of removing, from the model as it now is, every MLP neuron the later cuts will remove."""
        from prunetune.pruning.damage import mlp_cut_losses
        from prunetune.pruning.importance import score_mlp

        remaining = ModelShape.from_config(model.config).intermediate_size - (self.final_width or 0)
        if self.final_width is None or remaining <= 0:
            return 0.0
        p = self.recipe.prune
        scores = score_mlp(model, p.mlp_importance, batches, general_batches=general, seed=self.recipe.seed,
                           progress=False, options=p.mlp_options, layerwise=p.layerwise)
        return mlp_cut_losses(model, scores, [remaining], self.measures.held_out(tok))[0] - now

    def _calibration(self, tok, iteration: int):
        from prunetune.pruning.importance import calibration_inputs

        p = self.recipe.prune
        return calibration_inputs(tok, p.calibration, p.general, field=p.text_field, limit=p.calibration_samples,
                                  max_length=p.max_length, seed=self.recipe.seed * 1000 + iteration)

    def _prune(self, model, tok, step: Step, iteration: int, optimizer_state, state: LoopState,
               measured: Measured | None) -> Cut:
        """Score and cut in place, measuring the held-out loss around the cut when the allocation reads its
        damage; `measured`: what _next_step already scored on this same model, if anything."""
        from prunetune.pruning.prune import prune_step

        if measured:
            batches, general, scores, before = measured.batches, measured.general, measured.scores, measured.before
        else:
            batches, general = self._calibration(tok, iteration)
            scores = None
            before = held_out_loss(model, self.measures.held_out(tok)) if self.measures_damage else None
        plan, optimizer_state = prune_step(
            model, step_spec(self.recipe, step), batches, general=general, constraints=constraints_of(self.recipe),
            seed=self.recipe.seed, progress=self.progress, optimizer_state=optimizer_state, mlp_scores=scores,
        )
        plan.meta["iteration"] = iteration
        dist.check_same_model(model, f"pruning in iteration {iteration}")
        after = held_out_loss(model, self.measures.held_out(tok)) if before is not None else None
        rest = self._rest_damage(model, tok, batches, general, after) if after is not None and self.measures_rest else None
        cut = Cut(plan, optimizer_state, before=before, after=after, rest=rest)
        counts = count_params(model)
        self.rundir.metric({"event": "prune", "iteration": iteration, **shape_fields(model), **counts,
                            "step": step.to_dict(), "attempt": state.retries, "damage": cut.damage,
                            "loss_before": before, "loss_after": after})
        if self.recipe.evaluation.after_prune:
            pm = self._evaluate(model, tok, None)
            self.rundir.metric({"event": "eval_after_prune", "iteration": iteration, **counts, "metrics": pm})
        return cut

    def _recover(self, model, tok, state: LoopState, teacher, cut: Cut, iteration: int):
        """Recover in place; returns (model, optimizer state to carry, optimizer steps taken, None), or
        (model, None, 0, why) when training diverged."""
        from prunetune.data import take
        from prunetune.recovery import Diverged, GlobalSchedule, recover

        r, rd = self.recipe.recovery, self.rundir
        if r.method == "none":
            return model, cut.optimizer_state, 0, None
        cfg, size, stop_at, probe = self._budget(model, tok, state, iteration, cut)
        seed = self.recipe.seed
        reward_funcs = None
        if r.method == "grpo":
            records, reward_funcs = grpo_data(self.recipe, tok, size, seed * 1000 + state.chunks_used + 1)
        elif self._records is not None:  # made once per run: fresh records while they last, then around again
            records = [self._records[(state.records_used + i) % len(self._records)] for i in range(size)]
            if r.teacher_data is not None and cfg.chat_template is None:
                cfg.chat_template = False  # the teacher's prompts are formatted already
        else:
            records = take(r.data, state.records_used, size, seed=seed)
        schedule = None
        if r.global_schedule:
            per, remaining = cfg.max_steps, len(state.queue)  # `remaining` includes this iteration
            total = r.total_steps or state.accepted_recovery_steps + per * remaining
            schedule = GlobalSchedule(total_steps=total, start_step=state.accepted_recovery_steps,
                                      warmup_ratio=cfg.warmup_ratio, lr_scheduler_type=cfg.lr_scheduler_type,
                                      decay_ratio=cfg.decay_ratio)
        try:
            res = recover(model, tok, r.method, records, cfg, teacher=teacher, reward_funcs=reward_funcs,
                          work_dir=rd.work(f"iteration_{iteration:02d}"),
                          optimizer_state=cut.optimizer_state if r.carry_optimizer else None,
                          schedule=schedule, progress=self.progress,
                          stop=self._until(tok, iteration, stop_at, probe))
        except Diverged as e:
            return model, None, 0, str(e)
        state.chunks_used += 1
        state.records_used += size
        state.recovery_steps += res.steps
        state.tokens += res.tokens_seen
        for m in res.metrics:
            rd.metric({"event": "recover", "iteration": iteration, "attempt": state.retries, **m})
        dist.check_same_model(res.model, f"recovery in iteration {iteration}")
        rd.metric({"event": "recovery_done", "iteration": iteration, "steps": res.steps, "tokens": res.tokens_seen,
                   "world_size": res.info.get("world_size", 1)})
        if probe is not None:  # the budget line of a probed cut is written once its probe has decided
            rd.metric({"event": "budget", "iteration": iteration, "steps": res.steps,
                       "measure": self.allocation.options.probe_measure, **probe.record()})
        crash_point(f"recover:{iteration}")
        return res.model, (res.optimizer_state if r.carry_optimizer else None), res.steps, None

    def _until(self, tok, iteration: int, stop_at: StopAt | None, probe=None):
        """Stop this cut's recovery once the held-out loss is back at `stop_at` (the allocation's, e.g.
        recovered), or where the cut's probe decides (allocation: probe, loop/probe.py)."""
        from prunetune.recovery import StopWhen

        if probe is not None:

            def probed(model, step: int) -> bool:
                crash_point(f"probe:{iteration}")
                return probe.check(model, step)

            return StopWhen(probed, 1)
        if stop_at is None:
            return None
        target, batches = stop_at.loss, self.measures.held_out(tok)

        def recovered(model, step: int) -> bool:
            loss = held_out_loss(model, batches)
            self.rundir.metric({"event": "recovery_check", "iteration": iteration, "step": step, "loss": loss,
                                "target": target})
            return loss <= target

        return StopWhen(recovered, stop_at.every)

    def _budget(self, model, tok, state: LoopState, iteration: int, cut: Cut):
        """(the tuner's config with this iteration's steps, records to take, where to stop early or None):
        the per-iteration budget, the whole budget for one-shot, or with recovery.total_steps what the
        recipe's allocation gives this cut out of what is left (loop/allocations/)."""
        from prunetune.recovery import resolve_config

        r = self.recipe.recovery
        cfg = resolve_config(r.method, r.config)
        if r.total_steps is None:
            mult = self.recipe.iterations if self.recipe.one_shot else 1  # one-shot spends the whole budget at once
            cfg.max_steps = cfg.max_steps * mult if cfg.max_steps is not None else None
            cfg.max_tokens = cfg.max_tokens * mult if cfg.max_tokens is not None else None
            return cfg, r.chunk_size * mult, None, None
        rest = [Step(**q) for q in state.queue[1:]]
        n_future = len(rest)
        if self.damage_mode:
            remaining = ModelShape.from_config(model.config).intermediate_size - self.final_width
            this = Step(**state.queue[0]).mlp_neurons
            structural = sum(1 for s in rest if s.kv_groups or s.layers or s.hidden)
            n_future = max(structural, future_cuts(remaining, this, sum(s.by_damage for s in rest)))
        b = Budget(r.total_steps, state.recovery_steps, n_future, iteration=iteration, damage=cut.damage,
                   rest=cut.rest, before=cut.before, min_share=r.min_share, final_share=r.final_share)
        if self.recipe.one_shot:  # one recovery: it takes the whole budget, whatever the allocation
            steps, stop_at = max(r.total_steps - state.recovery_steps, 1), None
        else:
            steps, stop_at = self.allocation.steps(b), self.allocation.stop(b)
        if getattr(self.allocation, "probes", False) and not self.recipe.one_shot:  # steps is the cap
            probe = self._start_probe(model, tok, r.total_steps - state.recovery_steps, n_future, cut)
            size = records_for(steps, r.chunk_size, cfg.max_steps)
            cfg.max_steps = steps
            return cfg, size, None, probe
        self.rundir.metric({"event": "budget", "iteration": iteration, "steps": steps, "damage": cut.damage,
                            "rest_damage": cut.rest, "left_before": r.total_steps - state.recovery_steps,
                            "future_cuts": n_future, "stop_at_loss": stop_at.loss if stop_at else None})
        size = records_for(steps, r.chunk_size, cfg.max_steps)
        cfg.max_steps = steps
        return cfg, size, stop_at, None

    def _start_probe(self, model, tok, left: int, n_future: int, cut: Cut):
        """This cut's probe: the measure right after the cut (every measure, for the budget line) and the
        damage still to come over this cut's damage, which scales the last cut's predicted curve."""
        from prunetune.loop.probe import ProbeRun, ratio_of

        measures = self.measures.all(tok)
        now = {name: fn(model) for name, fn in measures.items()}
        extra = lambda m: {name: round(fn(m), 5) for name, fn in measures.items()}  # noqa: E731
        o = self.allocation.options
        probe = ProbeRun(measures[o.probe_measure], probe=o.probe_steps, left=left, n_future=n_future,
                         ratio=ratio_of(cut.rest, cut.damage), first=now[o.probe_measure], extra=extra,
                         after_cut={k: round(v, 5) for k, v in now.items()})
        return probe

    def _evaluate(self, model, tok, out_dir: Path | None) -> dict:
        serve = self.recipe.evaluation.backend == "vllm"
        model_dir = self.rundir.save_for_serving(model, tok) if serve else None
        return evaluate_recipe(self.recipe, model, tok, out_dir, model_dir=model_dir, progress=self.progress)

    def _teaching(self, tok, out: Path, cache):
        """The dense teacher (None when the method reads none) and, made once per run, the recovery
        records it writes (teacher solutions) or the prompts on-policy methods sample from."""
        dense_teacher = self._dense_teacher(tok, out)
        self._records = teaching.run_records(self.recipe, tok, cache, dense_teacher, progress=self.progress)
        return dense_teacher if self.recipe.recovery.method in teaching.TEACHER_METHODS else None

    def _dense_teacher(self, tok, out: Path):
        """The dense teacher distillation supervises with (teacher-corrected once per run when asked)."""
        r = self.recipe.recovery
        if (r.method in teaching.TEACHER_METHODS and r.teacher == "dense") or r.teacher_correction:
            return teaching.corrected(load_model(self.recipe.model, self.recipe.dtype)[0], tok, self.recipe, out,
                                     progress=self.progress)
        return None

    def _teacher(self, model, dense_teacher):
        """This iteration's distillation teacher: the dense model, or a copy of the model before the cut."""
        if self.recipe.recovery.method not in teaching.TEACHER_METHODS:
            return None
        return dense_teacher if self.recipe.recovery.teacher == "dense" else copy.deepcopy(model).eval()

    def _bar(self, state: LoopState):
        from tqdm.auto import tqdm

        return tqdm(total=state.completed + len(state.queue), initial=state.completed, desc="prune-tune loop",
                    disable=not self.progress or not dist.is_main(), unit="iter")


def _log_accepted(iteration: int, model, metrics: dict) -> None:
    log.info("iteration %d: %s non-embedding params, %s", iteration,
             f"{count_params(model)['non_embedding_params']:,}", _fmt_metrics(metrics))


def _fmt_metrics(metrics: dict) -> str:
    return ", ".join(f"{t} accuracy {m['accuracy']:.3f}" for t, m in metrics.items() if "accuracy" in m)


def run(recipe: Recipe, *, restart: bool = False, progress: bool = True) -> dict:
    return Loop(recipe, restart=restart, progress=progress).run()
