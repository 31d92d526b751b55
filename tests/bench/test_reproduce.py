"""bench/reproduce.py's pure helpers: grouping runs into mean ± spread rows, and equal budgets."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from bench.common import cli

_PATH = Path(__file__).resolve().parents[2] / "bench" / "reproduce.py"
_spec = importlib.util.spec_from_file_location("bench_reproduce", _PATH)
reproduce = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = reproduce  # dataclasses look their module up there
_spec.loader.exec_module(reproduce)


def _overrides(cmd: list[str]) -> list[str]:
    """A `prunetune run` command's key=value overrides besides model= and output_dir=."""
    head = [*cli(), "run", reproduce.RECIPE]
    assert cmd[: len(head)] == head, cmd
    return [c for c in cmd[len(head) :] if not c.startswith(("model=", "output_dir="))]


def test_aggregate_groups_by_keys_with_sample_std():
    runs = [
        {"schedule": "one_shot", "seed": 0, "accuracy": 0.5},
        {"schedule": "gradual_4", "seed": 0, "accuracy": 0.2},
        {"schedule": "one_shot", "seed": 1, "accuracy": 0.7},
        {"schedule": "one_shot", "seed": 2, "accuracy": 0.6},
    ]
    rows = reproduce.aggregate(runs, ("schedule",))
    assert [r["schedule"] for r in rows] == ["one_shot", "gradual_4"]
    one = rows[0]
    assert one["n"] == 3 and one["mean"] == pytest.approx(0.6)
    assert one["std"] == pytest.approx(0.1)  # sample std of 0.5, 0.7, 0.6
    assert (one["min"], one["max"]) == (0.5, 0.7)
    assert rows[1] == {"schedule": "gradual_4", "n": 1, "mean": 0.2, "std": 0.0, "min": 0.2, "max": 0.2}


def test_every_schedule_spends_the_same_total_recovery_budget():
    for budget in reproduce.BUDGETS:
        totals = set()
        for _, _, iterations, _ in reproduce.SCHEDULES.values():
            steps, chunk = reproduce.budget_for(budget, iterations)
            totals.add((steps * iterations, chunk * iterations))
        assert len(totals) == 1


def test_one_shot_command_passes_the_per_iteration_budget_the_loop_multiplies():
    cmd = reproduce.loop_command(Path("m"), Path("o"), "one_shot", "cpt", "light", 2)
    steps = reproduce.BUDGETS["light"]["max_steps"]
    assert f"recovery.config.max_steps={steps}" in cmd and "one_shot=true" in cmd and "iterations=4" in cmd
    cmd8 = reproduce.loop_command(Path("m"), Path("o"), "gradual_8_naive", "cpt", "light", 2)
    assert f"recovery.config.max_steps={steps // 2}" in cmd8 and "schedule.layers={8: 1}" in cmd8


@pytest.mark.parametrize("experiment", sorted(reproduce.EXPERIMENTS))
def test_every_experiment_plans_to_its_target(experiment, capsys):
    """Each schedule's overrides form a recipe that `prunetune plan` accepts (nothing runs)."""
    from tests.conftest import run_cli

    for schedule in reproduce.EXPERIMENTS[experiment]:
        cmd = reproduce.loop_command(Path("m"), Path("o"), schedule, "sft", "light", 0, "first")
        overrides = _overrides(cmd)
        assert run_cli("plan", str(reproduce.ROOT / reproduce.RECIPE), *overrides) == 0, (schedule, capsys.readouterr().err)
        out = capsys.readouterr().out
        final = out.strip().splitlines()[-1]
        if experiment == "layers":
            assert "66.7% of non-embedding" in final, final
        else:
            assert "48.5% of non-embedding" in final or "49.5% of non-embedding" in final, final


def test_grpo_runs_spend_the_same_steps_with_grpo_settings(capsys):
    """A grpo run keeps the step budget, asks for the prompts its steps sample, and plans cleanly."""
    from tests.conftest import run_cli

    cmd = reproduce.loop_command(Path("m"), Path("o"), "gradual_4_carry", "grpo", "light", 0, "first")
    steps = reproduce.BUDGETS["light"]["max_steps"]
    per_step = reproduce.GRPO_TRAIN["per_device_train_batch_size"] // reproduce.NUM_GENERATIONS
    assert f"recovery.config.max_steps={steps}" in cmd and f"recovery.chunk_size={steps * per_step}" in cmd
    assert "recovery.method=grpo" in cmd and not any("max_length" in c for c in cmd)
    overrides = _overrides(cmd)
    assert run_cli("plan", str(reproduce.ROOT / reproduce.RECIPE), *overrides) == 0, capsys.readouterr().err
    assert reproduce.control_method("grpo") == "grpo" and reproduce.control_method("distill") == "cpt"


def test_wider_grpo_steps_keep_the_steps_sample_more_prompts_and_run_apart(tmp_path, capsys):
    """--grpo-prompts 8: same steps, 8 x 8 completions a step, 8 prompts a step in the chunk, own run dirs."""
    from tests.conftest import run_cli

    wide = reproduce.Knobs(grpo_prompts=8)
    cmd = reproduce.loop_command(Path("m"), Path("o"), "one_shot", "grpo", "light", 0, "first", wide)
    steps = reproduce.BUDGETS["light"]["max_steps"]  # per iteration: one_shot=true multiplies it
    assert f"recovery.config.max_steps={steps}" in cmd and f"recovery.chunk_size={steps * 8}" in cmd
    assert "recovery.config.per_device_train_batch_size=64" in cmd
    overrides = _overrides(cmd)
    assert run_cli("plan", str(reproduce.ROOT / reproduce.RECIPE), *overrides) == 0, capsys.readouterr().err
    assert wide.label("grpo") == "grpo_p8" and reproduce.Knobs().label("grpo") == "grpo"
    assert wide.label("sft") == "sft" and reproduce.Knobs(learning_rate=3e-4).label("cpt") == "cpt_lr0.0003"
    # a finished wide run is collected under its own label; the default-width grid does not see it
    summ = {"baseline": {"metrics": {"arith": {"accuracy": 0.9}}}, "final": {"metrics": {"arith": {"accuracy": 0.7}}}}
    summ |= {"completed_iterations": 1, "recovery_steps": steps, "tokens": 1, "wall_time": 1.0}
    (tmp_path / "grpo_p8-light-one_shot-s0").mkdir()
    (tmp_path / "grpo_p8-light-one_shot-s0" / "summary.json").write_text(json.dumps(summ))
    runs = reproduce.collect(tmp_path, ["grpo"], ["light"], ["one_shot"], [0], wide)["runs"]
    assert [(r["variant"], r["prompts_per_step"], r["accuracy"]) for r in runs] == [("8 prompts/step", 8, 0.7)]
    assert reproduce.collect(tmp_path, ["grpo"], ["light"], ["one_shot"], [0])["runs"] == []


def test_collect_counts_a_run_the_gate_stopped_as_the_dense_model_it_kept(tmp_path):
    base = {"baseline": {"metrics": {"arith": {"accuracy": 0.97}}}, "recovery_steps": 120, "tokens": 1}
    base |= {"wall_time": 1.0}
    stopped = base | {"final": None, "completed_iterations": 0, "rollbacks": 3, "stopped_reason": "gate violated"}
    done = base | {"final": {"metrics": {"arith": {"accuracy": 0.9}}}, "completed_iterations": 4}
    done |= {"non_embedding_params_kept": 0.495, "rollbacks": 0, "stopped_reason": None}
    for seed, summary in ((0, stopped), (1, done)):
        d = tmp_path / f"sft-light-gated-s{seed}"
        d.mkdir()
        (d / "summary.json").write_text(json.dumps(summary))
    runs = reproduce.collect(tmp_path, ["sft"], ["light"], ["gated"], [0, 1])["runs"]
    assert [(r["seed"], r["accuracy"], r["non_embedding_params_kept"]) for r in runs] == [
        (0, 0.97, 1.0),
        (1, 0.9, 0.495),
    ]
    assert runs[0]["stopped_reason"] == "gate violated" and runs[0]["completed_iterations"] == 0


def test_a_learning_rate_grid_trains_runs_and_control_at_that_rate_apart_from_the_default(tmp_path):
    knobs = reproduce.Knobs(learning_rate=3e-4)
    cmd = reproduce.loop_command(Path("m"), Path("o"), "gradual_4_carry", "cpt", "light", 0, "first", knobs)
    assert "recovery.config.learning_rate=0.0003" in cmd and "recovery.config.learning_rate=0.001" not in cmd
    every, _, _ = reproduce.control_commands(Path("m"), tmp_path / "c", "light", 0, "cpt", knobs)
    assert "learning_rate=0.0003" in every[0]
    assert knobs.variant("cpt", "carry") == "carry, lr 0.0003" and knobs.variant("cpt", None) == "lr 0.0003"
    assert reproduce.Knobs().variant("cpt", None) is None and knobs.fields("cpt") == {"learning_rate": 3e-4}
    assert reproduce.Knobs().fields("grpo") == {"learning_rate": 1e-4, "prompts_per_step": 2}


def test_a_combined_table_lists_only_the_grids_with_its_knobs_and_their_jobs(tmp_path):
    """--write-only with no grids file of its own gathers the others', but not those run with other knobs."""
    work = tmp_path / "gradual_vs_oneshot" / "sha8"
    work.mkdir(parents=True)
    cmd = ".venv/bin/python bench/reproduce.py gradual_vs_oneshot --recoveries grpo --suffix _g"
    grids = {"_g": cmd, "_p8": cmd + " --grpo-prompts 8", "_lr": cmd + " --learning-rate 3e-4"}
    for suffix, command in grids.items():
        (work / f"grids{suffix}.json").write_text(json.dumps([{"command": command, "wall_s": 1.0}]))
    args = ["gradual_vs_oneshot", "--work", str(tmp_path), "--model-dir", str(tmp_path / "x-sha8")]
    assert reproduce.main([*args, "--results", str(tmp_path / "r"), "--write-only", "--jobs", "5"]) == 0
    meta = json.loads((tmp_path / "r" / "gradual_vs_oneshot.json").read_text())["meta"]
    assert meta["commands"] == [cmd]
    assert meta["jobs"] == [2]  # as the grid ran (its default), not the --write-only call's 5
    assert "2 runs at a time" in (tmp_path / "r" / "gradual_vs_oneshot.md").read_text()


def test_a_deeper_target_cuts_the_runs_but_shares_the_dense_control(capsys):
    deep = reproduce.Knobs(keep=0.35)
    cmd = reproduce.loop_command(Path("m"), Path("o"), "gradual_4_carry", "grpo", "light", 0, "first", deep)
    assert "target.keep=0.35" in cmd and deep.label("grpo") == "grpo_keep0.35"
    assert deep.for_control.label("grpo") == "grpo" and deep.variant("grpo", "carry") == "carry, keep 0.35"
    from tests.conftest import run_cli

    overrides = _overrides(cmd)
    assert run_cli("plan", str(reproduce.ROOT / reproduce.RECIPE), *overrides) == 0, capsys.readouterr().err
    assert "final: 33.9% of non-embedding" in capsys.readouterr().out


def test_trajectory_reads_every_evaluation_and_the_grpo_signal_a_reading_quotes(tmp_path):
    events = [
        {"event": "baseline", "metrics": {"arith": {"accuracy": 0.9}}},
        {"event": "recover", "step": 1, "loss": 2.0, "reward": 0.5, "frac_reward_zero_std": 0.25},
        {"event": "recover", "step": 2, "loss": 1.0, "reward": 0.7, "frac_reward_zero_std": 0.75},
        {"event": "eval", "iteration": 1, "metrics": {"arith": {"accuracy": 0.7}}},
        {"event": "eval", "iteration": 2, "metrics": {"arith": {"accuracy": 0.6}}},
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    assert reproduce.trajectory(path) == {
        "eval_accuracies": [0.7, 0.6],
        "loss_first_last": [2.0, 1.0],
        "frac_reward_zero_std": 0.5,
        "reward_first_last_10": [0.6, 0.6],  # two steps: both windows hold both
    }
    path.write_text("".join(json.dumps(e) + "\n" for e in events if "reward" not in e))  # no GRPO steps
    assert reproduce.trajectory(path) == {"eval_accuracies": [0.7, 0.6]}
    assert reproduce.trajectory(tmp_path / "missing.jsonl") == {"eval_accuracies": []}


@pytest.mark.parametrize("schedule", ["gradual_8_damage", "gradual_4_allocated", "gradual_4_wsd"])
def test_the_damage_and_wsd_schedules_plan_on_the_grid_budget(schedule, capsys):
    from tests.conftest import run_cli

    cmd = reproduce.loop_command(Path("m"), Path("o"), schedule, "sft", "light", 0, "first", reproduce.Knobs(keep=0.35))
    overrides = _overrides(cmd)
    steps, _ = reproduce.budget_for("light", reproduce.SCHEDULES[schedule][2])
    if schedule in reproduce.TOTAL_STEPS_SCHEDULES:  # one run-wide budget: the grid's total steps
        assert f"recovery.total_steps={steps * reproduce.SCHEDULES[schedule][2]}" in overrides
    assert run_cli("plan", str(reproduce.ROOT / reproduce.RECIPE), *overrides) == 0, capsys.readouterr().err
    assert "33.9% of non-embedding" in capsys.readouterr().out.strip().splitlines()[-1]
