"""Step.halves: how the adaptive gate splits a step that failed it."""

from prunetune.loop.planner import Step


def test_mixed_step_splits_the_whole_layer_from_the_neurons_first():
    assert Step(64, 0, 1).halves(8) == (Step(0, 0, 1), Step(64, 0, 0))
    assert Step(64, 1, 0).halves(8) == (Step(0, 1, 0), Step(64, 0, 0))


def test_structural_parts_halve_before_neurons_and_totals_are_kept():
    for step in (Step(0, 0, 3), Step(0, 2, 2), Step(0, 1, 1), Step(48, 0, 0), Step(40, 0, 0)):
        a, b = step.halves(8)
        assert (a.mlp_neurons + b.mlp_neurons, a.kv_groups + b.kv_groups, a.layers + b.layers) == (
            step.mlp_neurons,
            step.kv_groups,
            step.layers,
        )
        assert a != Step() and b != Step()
    assert Step(0, 0, 3).halves(8) == (Step(0, 0, 1), Step(0, 0, 2))
    assert Step(40, 0, 0).halves(8) == (Step(16, 0, 0), Step(24, 0, 0))  # multiples of round_to


def test_atomic_steps_do_not_split():
    assert Step(0, 0, 1).halves(8) is None
    assert Step(0, 1, 0).halves(8) is None
    assert Step(8, 0, 0).halves(8) is None


def test_hidden_channels_split_apart_from_other_units_then_halve_in_round_to():
    assert Step(64, 1, 0, hidden=16).halves(8) == (Step(0, 1, 0, hidden=16), Step(64, 0, 0))
    assert Step(0, 1, 1, hidden=16).halves(8) == (Step(0, 1, 1), Step(hidden=16))
    assert Step(hidden=24).halves(8) == (Step(hidden=8), Step(hidden=16))
    assert Step(hidden=8).halves(8) is None


def test_schedule_hidden_is_planned_and_counted():
    from prunetune.loop.planner import plan_steps, validate_recipe
    from prunetune.loop.recipe import load_recipe

    recipe = load_recipe("smoke", ["schedule.hidden={1: 16}"])
    dense, steps, shapes = validate_recipe(recipe)
    assert [st.hidden for st in steps] == [16, 0]
    assert [sh.hidden_size for sh in shapes] == [64, 48, 48]
    # MLP fills what the hidden cut leaves: the target holds, and the MLP stays wider than without it
    assert shapes[-1].non_embedding_params() <= 0.5 * dense.non_embedding_params()
    without = validate_recipe(load_recipe("smoke"))[2]
    assert shapes[-1].intermediate_size > without[-1].intermediate_size
    one_shot = plan_steps(load_recipe("smoke", ["schedule.hidden={1: 16, 2: 8}", "one_shot=true"]), dense)
    assert one_shot[0].hidden == 24
