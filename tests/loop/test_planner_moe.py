"""The planner on MoE models: per-iteration experts, expert-width fill for target.keep (total or active),
the plan command's MoE columns, and errors before any weight loads."""

import pytest

from prunetune.errors import UserError
from prunetune.loop import load_recipe, validate_recipe
from prunetune.loop.planner import Step, counted, step_spec
from tests.conftest import run_cli

BASE = ["model=tiny-random-mixtral", "iterations=2", "schedule.round_to=1", "recovery.method=none"]


def _plan(*overrides):
    recipe = load_recipe(None, [*BASE, *overrides])
    return recipe, *validate_recipe(recipe)


@pytest.mark.parametrize("count", ["total", "active"])
def test_target_keep_is_met_by_expert_width(count):
    recipe, shape, steps, shapes = _plan("target.keep=0.7", f"target.count={count}", "schedule.experts={1: 2}")
    assert [s.experts for s in steps] == [2, 0]
    assert all(s.mlp_neurons == 0 for s in steps) and sum(s.expert_neurons for s in steps) > 0
    final = shapes[-1]
    assert final.num_experts == 6
    assert counted(final, count) <= 0.7 * counted(shape, count)
    wider = final.after(expert_neurons_removed=-1)  # one neuron more per expert would break the budget
    assert counted(wider, count) > 0.7 * counted(shape, count)
    spec = step_spec(recipe, steps[0])
    assert (spec.experts, spec.expert_neurons) == (2, steps[0].expert_neurons)


def test_active_count_ignores_expert_removal():
    _, shape, _, shapes = _plan("target.keep=0.9", "target.count=active", "schedule.experts={1: 4}")
    assert shapes[-1].active_non_embedding_params() <= 0.9 * shape.active_non_embedding_params()
    assert shapes[-1].num_experts == 4


def test_one_shot_merges_moe_amounts():
    _, _, steps, _ = _plan("target.keep=null", "one_shot=true", "schedule.experts={1: 1, 2: 2}",
                           "schedule.expert_neurons={2: 8}")
    assert len(steps) == 1 and (steps[0].experts, steps[0].expert_neurons) == (3, 8)


@pytest.mark.parametrize("overrides, match", [
    (["model=tiny-random-llama", "schedule.experts={1: 1}"], "iteration 1: .*'llama' is a dense model"),
    (["schedule.experts={1: 4, 2: 3}"], "iteration 2: .*num_experts_per_tok=2"),
    (["schedule.experts={3: 1}"], "schedule.experts: iteration 3 is outside 1..2"),
    (["schedule.experts={1: -1}"], "schedule.experts: counts must not be negative"),
    (["target.count=some"], "target.count"),
])
def test_bad_moe_schedules_are_user_errors(overrides, match):
    with pytest.raises(UserError, match=match):
        _plan("target.keep=null", *overrides)


def test_moe_steps_halve_experts_first():
    assert Step(8, 0, 0, experts=2).halves(8) == (Step(0, 0, 0, experts=2), Step(8))
    assert Step(experts=2, expert_neurons=4).halves() == (Step(experts=1, expert_neurons=2),
                                                         Step(experts=1, expert_neurons=2))
    assert Step(experts=1, expert_neurons=4).halves() == (Step(experts=1), Step(expert_neurons=4))
    assert Step(experts=1).halves() is None


def test_plan_command_shows_experts_and_active_parameters(capsys):
    assert run_cli("plan", "smoke", *BASE, "target.keep=0.7", "schedule.experts={1: 2}", "schedule.kv_groups={}",
                   "schedule.layers={}") == 0
    out = capsys.readouterr().out
    assert "-experts" in out and "active non-emb" in out and "of active non-embedding parameters" in out
