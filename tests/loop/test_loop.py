"""The Prune-Tune Loop end to end on tiny models: tree, resume after SIGKILL, gate rollback, one-shot budget."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from prunetune.errors import UserError
from prunetune.io import read_jsonl
from prunetune.loop import run
from prunetune.loop.recipe import load_recipe
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "recipes" / "smoke.yaml"
FAST = [
    "evaluation.limit=4",
    "evaluation.max_new_tokens=8",
    "recovery.config.max_steps=2",
    "prune.calibration_samples=4",
    "recovery.chunk_size=16",
]


def _recipe(tmp_path, *overrides):
    return load_recipe(SMOKE, [f"output_dir={tmp_path / 'run'}", *FAST, *overrides])


def test_three_iterations_write_the_expected_tree(tmp_path):
    recipe = _recipe(tmp_path, "iterations=3", "schedule.kv_groups={3: 1}", "schedule.layers={2: 1}")
    summary = run(recipe, progress=False)
    out = Path(recipe.output_dir)
    assert summary["completed_iterations"] == 3
    for name in (
        "recipe.yaml",
        "metrics.jsonl",
        "summary.json",
        "report.md",
        "report.html",
        "log.txt",
        "accuracy_vs_params_arith.png",
        "recovery_loss.png",
        "baseline/eval.json",
    ):
        assert (out / name).exists(), name
    assert os.readlink(out / "final") == "iteration_03"
    saved = json.loads((out / "summary.json").read_text())
    for key in ("baseline", "final"):
        assert {"params", "non_embedding_params", "metrics"} <= set(saved[key])
        assert "accuracy" in saved[key]["metrics"]["arith"]
    assert saved["final"]["non_embedding_params"] <= 0.5 * saved["baseline"]["non_embedding_params"]
    shapes = []
    for i in (1, 2, 3):
        d = out / f"iteration_{i:02d}"
        model = AutoModelForCausalLM.from_pretrained(d)  # stock loader, every iteration
        shapes.append(
            (model.config.intermediate_size, model.config.num_key_value_heads, model.config.num_hidden_layers)
        )
        history = json.loads((d / "prunetune_history.json").read_text())
        assert len(history) == i
        assert (d / "state" / "eval" / "arith.predictions.jsonl").is_file()
        # a model directory holds only the model: serving engines load every *.safetensors in it
        assert sorted(f.name for f in d.glob("*.safetensors")) == ["model.safetensors"]
        assert {"loop_state.json", "eval.json"} <= {f.name for f in (d / "state").iterdir()}
        assert json.loads((d / "config.json").read_text())["use_cache"] is True  # an inference default
    assert shapes[1][2] == 3 and shapes[2][1] == 1  # a layer in iteration 2, a KV group in iteration 3
    events = [m["event"] for m in read_jsonl(out / "metrics.jsonl")]
    assert events[0] == "baseline" and events.count("prune") == 3 and events.count("eval") == 3
    assert "recover" in events
    assert "| 3 |" in (out / "report.md").read_text()


def _cli(out, *extra, crash=None):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    if crash:
        env["PRUNETUNE_CRASH_AT"] = crash
    cmd = [
        sys.executable,
        "-m",
        "prunetune",
        "run",
        str(SMOKE),
        f"output_dir={out}",
        *FAST,
        *extra,
        "--no-progress",
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("crash", ["recover:2", "save:2"])
def test_resume_after_sigkill(tmp_path, crash):
    out = tmp_path / "run"
    killed = _cli(out, crash=crash)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (out / "iteration_01" / "state" / "loop_state.json").is_file()
    assert not (out / "iteration_02").exists()  # the interrupted iteration never appears half-written
    if crash.startswith("save"):
        assert [p for p in out.iterdir() if p.name.startswith(".iteration_02.tmp-")]
    before = (out / "iteration_01" / "model.safetensors").read_bytes()
    done = _cli(out)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "iteration_01" / "model.safetensors").read_bytes() == before  # completed work untouched
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completed_iterations"] == 2
    reference = _recipe(tmp_path / "ref")
    expected = run(reference, progress=False)
    assert summary["final"]["params"] == expected["final"]["params"]
    AutoModelForCausalLM.from_pretrained(out / "final")
    iters = [m["iteration"] for m in read_jsonl(out / "metrics.jsonl") if m["event"] == "prune"]
    assert iters == [1, 2]  # the interrupted attempt's log lines were dropped on resume


@pytest.fixture
def accuracy_falls(monkeypatch):
    """The dense model scores 1.0 and every pruned one 0.0: every iteration violates a gate of max_drop < 1."""
    import prunetune.tasks.evaluate as ev

    real, calls = ev.evaluate, []

    def evaluate(*args, **kwargs):
        out = real(*args, **kwargs)
        out["metrics"]["accuracy"] = 1.0 if not calls else 0.0
        calls.append(1)
        return out

    monkeypatch.setattr(ev, "evaluate", evaluate)


def test_gate_violation_rolls_back_and_halves_the_step(tmp_path, accuracy_falls):
    recipe = _recipe(
        tmp_path, "iterations=1", "gate.max_drop=0.5", "gate.max_retries=1", "schedule.kv_groups={}"
    )
    summary = run(recipe, progress=False)
    metrics = read_jsonl(Path(recipe.output_dir) / "metrics.jsonl")
    prunes = [m for m in metrics if m["event"] == "prune"]
    assert [m["attempt"] for m in prunes] == [0, 1]
    first, second = prunes[0]["step"]["mlp_neurons"], prunes[1]["step"]["mlp_neurons"]
    assert second == first // 2 // 8 * 8 and second < first  # half the step, still a multiple of round_to
    assert prunes[1]["intermediate_size"] == 96 - second  # retried from the restored dense model
    assert summary["rollbacks"] == 1 and "gate violated" in summary["stopped_reason"]
    assert summary["completed_iterations"] == 0 and summary["final"] is None


@pytest.mark.parametrize("allocation, steps", [
    (["recovery.allocation=geometric", "recovery.growth=2"], [2, 1]),  # 6/3, then (6-2)/3: the retry pays too
    (["recovery.allocation=recovered", "recovery.tolerance=100", "recovery.check_every=1"], [1, 1]),
])
def test_a_rollback_with_a_run_budget_spends_from_it(tmp_path, accuracy_falls, allocation, steps):
    recipe = _recipe(tmp_path, "iterations=2", "gate.max_drop=0.5", "gate.max_retries=1", "schedule.kv_groups={}",
                     "recovery.total_steps=6", *allocation)
    summary = run(recipe, progress=False)
    metrics = read_jsonl(Path(recipe.output_dir) / "metrics.jsonl")
    assert [m["attempt"] for m in metrics if m["event"] == "prune"] == [0, 1]
    assert [m["steps"] for m in metrics if m["event"] == "recovery_done"] == steps
    assert summary["rollbacks"] == 1 and summary["completed_iterations"] == 0 and "gate violated" in summary["stopped_reason"]


def test_gate_stop(tmp_path, accuracy_falls):
    recipe = _recipe(tmp_path, "gate.max_drop=0.5", "gate.on_violation=stop")
    summary = run(recipe, progress=False)
    assert summary["rollbacks"] == 0 and summary["completed_iterations"] == 0
    assert not list(Path(recipe.output_dir).glob("iteration_*"))


def test_one_shot_spends_the_same_budget(tmp_path):
    grad = run(_recipe(tmp_path / "g"), progress=False)
    one = run(_recipe(tmp_path / "o", "one_shot=true"), progress=False)
    assert one["completed_iterations"] == 1 and grad["completed_iterations"] == 2
    assert one["recovery_steps"] == grad["recovery_steps"]
    assert one["tokens"] == grad["tokens"]
    assert one["final"]["params"] == grad["final"]["params"]


def test_changed_recipe_against_existing_run_is_an_error(tmp_path, capsys):
    out = tmp_path / "run"
    run(_recipe(tmp_path, "iterations=1", "schedule.kv_groups={}"), progress=False)
    before = (out / "iteration_01" / "model.safetensors").read_bytes()
    capsys.readouterr()
    rc = run_cli("run", SMOKE, f"output_dir={out}", *FAST, "iterations=1", "schedule.kv_groups={}", "seed=5")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "differs at 'seed'" in err[0]
    assert (out / "iteration_01" / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["recovery.methd=cpt"], "unknown key 'recovery.methd' (did you mean 'method'?)"),
        (["target.keep=0.001"], "impossible"),
        (["model=/no/such/model"], "does not exist"),
        (["recovery.method=cpd"], "did you mean 'cpt'"),
        (["schedule.layers={9: 1}"], "outside 1..2"),
        (["schedule.layers={2:1}"], "schedule.layers.121: expected an integer, got None (a mapping like {2: 1}, with a space"),
        (["seed=abc"], "seed: expected an integer, got 'abc'"),
        (["gate.max_drop=-0.1"], "gate.max_drop: must be at least 0.0, got -0.1"),
        (["prune.mlp_importance=ptl", "prune.mlp_options={order: ranked}"], "prune.mlp_options.order: must be one of rank, index"),
        (["evaluation.tasks=[arithm]"], "did you mean 'arith'"),
        (["recovery.config.learning_rat=1"], "learning_rate"),
    ],
)
def test_bad_recipes_fail_before_anything_runs(tmp_path, capsys, overrides, message):
    out = tmp_path / "run"
    rc = run_cli("run", SMOKE, f"output_dir={out}", *overrides)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_output_dir_holding_something_else(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("x")
    assert run_cli("run", SMOKE, f"output_dir={out}") == 2
    assert "holds no prunetune run" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "x"


def test_every_shipped_recipe_validates_and_plans_by_name(capsys, tmp_path, monkeypatch):
    from prunetune.loop.recipe import shipped_recipes

    recipes = shipped_recipes()
    assert {"demo", "smoke", "smollm2"} <= set(recipes)
    monkeypatch.chdir(tmp_path)  # by name, from anywhere: the recipes are package data
    for name, path in recipes.items():
        assert run_cli("validate", name) == 0, name
        assert run_cli("plan", name) == 0, name
        text = path.read_text()
        assert text.startswith("#"), f"{path.name} must open with a comment saying what it does"
    out = capsys.readouterr().out
    assert "final:" in out


def test_plan_needs_no_weights(tmp_path, capsys):
    cfg = tmp_path / "config.json"
    cfg.write_text(
        json.dumps(
            {
                "model_type": "llama",
                "hidden_size": 4096,
                "intermediate_size": 14336,
                "num_hidden_layers": 32,
                "num_attention_heads": 32,
                "num_key_value_heads": 8,
                "vocab_size": 128256,
            }
        )
    )
    assert (
        run_cli(
            "plan",
            SMOKE,
            "model=/absent",
            f"model_config={cfg}",
            "schedule.round_to=64",
            "schedule.kv_groups={}",
            "iterations=4",
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "14336" in out
    kept = float(out.split("final: ")[1].split("%")[0])
    assert 45.0 <= kept <= 50.0  # target keep 0.5, widths rounded down to multiples of 64


def test_unknown_top_level_key_suggests():
    with pytest.raises(UserError, match="did you mean 'iterations'"):
        load_recipe(SMOKE, ["iteration=3"])


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    """Two CPU ranks (gloo): identical cuts and recovery on both (checked inside the loop), rank 0 writes."""
    out = tmp_path / "run"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29531",
        "-m",
        "prunetune",
        "run",
        str(SMOKE),
        f"output_dir={out}",
        *FAST,
        "iterations=1",
        "schedule.kv_groups={}",
        "--no-progress",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completed_iterations"] == 1
    done = [m for m in read_jsonl(out / "metrics.jsonl") if m["event"] == "recovery_done"]
    assert len(done) == 1 and done[0]["world_size"] == 2  # one writer, a two-rank recovery
    AutoModelForCausalLM.from_pretrained(out / "final")


def test_builtin_recovery_and_calibration_data_match_the_arith_task():
    """Recovery/calibration text must come from the distribution the task evaluates (and the reference learned)."""
    from prunetune.data import calibration_texts
    from prunetune.data import chunk as data_chunk
    from prunetune.tasks import get_task

    task_numbers = {
        int(n)
        for e in get_task("arith").examples("test", limit=200)
        for n in e.meta["spec"]["steps"]
        for n in [n[1]]
    }
    rec = data_chunk("arith", 0, 200)
    assert max(task_numbers) <= 20
    import re

    for text in [r["question"] for r in rec] + calibration_texts("arith", limit=50):
        assert max(int(x) for x in re.findall(r"\d+", text.split("Answer:")[0])) <= 20, text


def test_keep_last_drops_older_weights_but_keeps_their_records(tmp_path):
    recipe = _recipe(tmp_path, "keep=last", "schedule.kv_groups={}", "recovery.carry_optimizer=true")
    run(recipe, progress=False)
    out = Path(recipe.output_dir)
    assert not (out / "iteration_01" / "model.safetensors").exists()
    assert not list((out / "iteration_01").rglob("*.safetensors"))  # the carried AdamW moments too
    assert (out / "iteration_01" / "state" / "eval.json").is_file() and (
        out / "iteration_01" / "prunetune_history.json"
    ).is_file()
    AutoModelForCausalLM.from_pretrained(out / "final")


def test_grpo_recovery_in_the_loop(tmp_path):
    """GRPO recovers inside the loop: prompts from the task's train split, its score as the reward."""
    grpo = (
        "recovery.config={max_steps: 2, per_device_train_batch_size: 4, num_generations: 4, "
        "max_completion_length: 8, learning_rate: 1.0e-5}"
    )
    recipe = _recipe(tmp_path, "iterations=1", "schedule.kv_groups={}", "recovery.method=grpo", grpo)
    summary = run(recipe, progress=False)
    out = Path(recipe.output_dir)
    assert summary["completed_iterations"] == 1 and summary["recovery_steps"] == 2
    logged = [m for m in read_jsonl(out / "metrics.jsonl") if "reward" in m]
    assert logged and all(0.0 <= m["reward"] <= 1.0 for m in logged)
    AutoModelForCausalLM.from_pretrained(out / "final")


@pytest.mark.parametrize("teacher", ["dense", "previous"])
def test_distill_teacher_in_the_loop(tmp_path, monkeypatch, teacher):
    """recovery.teacher=dense distils every iteration from the original model; previous from the last cut's."""
    import prunetune.recovery
    from prunetune.checkpoint import count_params

    seen, real = [], prunetune.recovery.recover

    def spy(model, tok, method, records, cfg, teacher=None, **kw):
        before = {k: v.clone() for k, v in teacher.state_dict().items()}
        seen.append((count_params(teacher)["non_embedding_params"], count_params(model)["non_embedding_params"]))
        res = real(model, tok, method, records, cfg, teacher=teacher, **kw)
        assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # never trained
        return res

    monkeypatch.setattr(prunetune.recovery, "recover", spy)
    recipe = _recipe(tmp_path, "recovery.method=distill", f"recovery.teacher={teacher}")
    summary = run(recipe, progress=False)
    dense = summary["baseline"]["non_embedding_params"]
    (t1, s1), (t2, s2) = seen
    assert t1 == dense and s1 < dense  # iteration 1: the teacher is the uncut model either way
    assert t2 == (dense if teacher == "dense" else s1) and s2 < s1


def test_distill_defaults_to_the_dense_teacher():
    assert load_recipe(SMOKE, ["recovery.method=distill"]).recovery.teacher == "dense"


def test_a_run_written_before_the_state_folder_resumes(tmp_path):
    """Old runs kept loop state and AdamW moments beside the weights; resuming moves them into state/."""
    recipe = _recipe(tmp_path, "iterations=2", "schedule.kv_groups={}", "recovery.carry_optimizer=true")
    run(load_recipe(SMOKE, [f"output_dir={recipe.output_dir}", *FAST, "iterations=2", "schedule.kv_groups={}",
                            "recovery.carry_optimizer=true"]), progress=False)
    out = Path(recipe.output_dir)
    it1 = out / "iteration_01"
    for f in list((it1 / "state").iterdir()):  # lay iteration 1 out the old way, drop iteration 2
        f.rename(it1 / f.name)
    (it1 / "state").rmdir()
    import shutil

    shutil.rmtree(out / "iteration_02")
    summary = run(recipe, progress=False)
    assert summary["completed_iterations"] == 2
    assert (it1 / "state" / "optimizer_state.safetensors").is_file()
    assert sorted(f.name for f in it1.glob("*.safetensors")) == ["model.safetensors"]


def test_damage_sized_cuts_reach_the_target_spend_the_total_and_export_a_family(tmp_path, capsys):
    from prunetune.loop.planner import final_mlp_width, shape_of

    recipe = _recipe(tmp_path, "iterations=3", "schedule.shape=damage", "schedule.max_damage=1e-4",
                     "recovery.total_steps=7", "schedule.kv_groups={}", "export.keeps=[0.9, 0.7, 0.5]")
    summary = run(recipe, progress=False)
    out = Path(recipe.output_dir)
    events = read_jsonl(out / "metrics.jsonl")
    assert summary["final"]["shape"]["intermediate_size"] == final_mlp_width(recipe, shape_of(recipe))
    assert 1 <= summary["completed_iterations"] <= 3
    budgets = [m["steps"] for m in events if m["event"] == "budget"]
    assert sum(budgets) == 7 == summary["recovery_steps"] and min(budgets) >= 1
    assert any(m["event"] == "damage_plan" for m in events)
    assert all(m.get("damage") is not None for m in events if m["event"] == "prune")
    family = summary["family"]
    assert [f["keep"] for f in family] == [0.9, 0.7, 0.5] and all(f["kept"] <= f["keep"] for f in family)
    for f in family:
        AutoModelForCausalLM.from_pretrained(out / f["dir"])  # stock, servable checkpoints
        assert not list((out / f["dir"]).glob("state/*.safetensors"))
    assert run_cli("pick", out, "--max-params", summary["baseline"]["params"]) == 0
    assert "picked: " + str(out / family[-1]["dir"]) in capsys.readouterr().out
    assert run_cli("pick", out, "--min-accuracy", "1.0") == 1  # a random model meets no bar


def test_one_shot_spends_the_whole_total_in_one_recovery(tmp_path):
    one = run(_recipe(tmp_path / "o", "one_shot=true", "recovery.total_steps=5"), progress=False)
    assert one["completed_iterations"] == 1 and one["recovery_steps"] == 5


def test_a_hand_set_split_is_spent_as_written(tmp_path, capsys):
    recipe = _recipe(tmp_path, "recovery.total_steps=5", "recovery.allocation=split", "recovery.split=[1, 4]")
    assert run(recipe, progress=False)["recovery_steps"] == 5
    events = read_jsonl(Path(recipe.output_dir) / "metrics.jsonl")
    assert [m["steps"] for m in events if m["event"] == "recovery_done"] == [1, 4]
    # a split needs no estimate of the damage still to come: that measurement (a scoring pass) is skipped
    assert [m["rest_damage"] for m in events if m["event"] == "budget"] == [None, None]
    assert run_cli("validate", "smoke", "recovery.total_steps=5", "recovery.allocation=split",
                   "recovery.split=[2, 2]") == 2
    assert "recovery.split sums to 4; recovery.total_steps is 5" in capsys.readouterr().err
    assert run_cli("validate", "smoke", "recovery.total_steps=5", "recovery.split=[1, 4]") == 2
    assert "recovery.split and recovery.allocation: split go together" in capsys.readouterr().err


def test_recovered_allocation_stops_each_cut_once_back_and_leaves_the_rest_to_the_last(tmp_path, capsys):
    recipe = _recipe(tmp_path, "iterations=3", "recovery.total_steps=9", "recovery.allocation=recovered",
                     "recovery.tolerance=100", "recovery.check_every=2")
    assert run(recipe, progress=False)["recovery_steps"] == 9
    events = read_jsonl(Path(recipe.output_dir) / "metrics.jsonl")
    assert [m["steps"] for m in events if m["event"] == "budget"] == [7, 6, 5]  # caps: one step per later cut
    assert [m["steps"] for m in events if m["event"] == "recovery_done"] == [2, 2, 5]
    checks = [m for m in events if m["event"] == "recovery_check"]
    assert [(c["iteration"], c["step"]) for c in checks] == [(1, 2), (2, 2)]  # none in the last iteration
    prunes = [m for m in events if m["event"] == "prune"]
    assert [c["target"] for c in checks] == pytest.approx([p["loss_before"] + 100 for p in prunes[:2]])
    table = [[c.strip() for c in line.strip("|").split("|")]
             for line in (Path(recipe.output_dir) / "report.md").read_text().splitlines() if line.startswith("|")]
    head = table[0]
    rows = {r[0]: r for r in table[1:] if r[0] in ("1", "2", "3")}
    assert [rows[i][head.index("steps")] for i in "123"] == ["2", "2", "5"]  # the plan as it ran, in the report
    assert float(rows["1"][head.index("damage")]) == pytest.approx(prunes[0]["damage"], abs=1e-3)
    assert run_cli("validate", "smoke", "recovery.allocation=recovered") == 2
    assert "recovery.allocation: recovered needs recovery.total_steps" in capsys.readouterr().err
    assert run_cli("validate", "smoke", "recovery.total_steps=9", "recovery.allocation=recovered",
                   "recovery.check_every=0") == 2
    assert "recovery.check_every" in capsys.readouterr().err


def test_geometric_allocation_back_loads_the_budget(tmp_path):
    recipe = _recipe(tmp_path, "iterations=3", "recovery.total_steps=9", "recovery.allocation=geometric",
                     "recovery.growth=2")
    assert run(recipe, progress=False)["recovery_steps"] == 9
    events = read_jsonl(Path(recipe.output_dir) / "metrics.jsonl")
    assert [m["steps"] for m in events if m["event"] == "recovery_done"] == [1, 3, 5]  # 9/7, 8/3, the rest
    assert [m["rest_damage"] for m in events if m["event"] == "budget"] == [None] * 3  # nothing to estimate


def test_damage_options_validate(capsys):
    assert run_cli("validate", "smoke", "schedule.shape=damage", "schedule.max_damage=0") == 2
    assert "schedule.max_damage: must be greater than 0" in capsys.readouterr().err
    assert run_cli("validate", "smoke", "recovery.total_steps=10", "recovery.config={}") == 2
    assert "recovery.config.max_steps" in capsys.readouterr().err
    assert run_cli("validate", "smoke", "export.keeps=[1.5]") == 2
    assert "export.keeps" in capsys.readouterr().err
    assert run_cli("plan", "smoke", "schedule.shape=damage", "recovery.total_steps=10") == 0
    assert "~" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("extra", [
    ["schedule.shape=damage", "recovery.total_steps=5", "schedule.kv_groups={}"],
    ["recovery.total_steps=5", "recovery.allocation=recovered", "recovery.tolerance=100", "recovery.check_every=1"],
], ids=["damage", "recovered"])
def test_a_damage_sized_run_resumes_after_sigkill(tmp_path, extra):
    out = tmp_path / "run"
    killed = _cli(out, *extra, crash="recover:1")
    assert killed.returncode == -9
    done = _cli(out, *extra)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recovery_steps"] == 5
    done_steps = [m["steps"] for m in read_jsonl(out / "metrics.jsonl") if m["event"] == "recovery_done"]
    assert sum(done_steps) == 5  # the killed attempt's lines were dropped
    checks = [m["iteration"] for m in read_jsonl(out / "metrics.jsonl") if m["event"] == "recovery_check"]
    assert checks == ([1] if "recovery.allocation=recovered" in extra else [])  # once: the first cut stops at step 1


def test_a_damage_sized_cut_is_scored_once(tmp_path, monkeypatch):
    """The scores that chose the cut are the ones it is cut by: the scorer runs once per cut, not twice."""
    import dataclasses

    from prunetune.pruning.importance import MLP_SCORERS

    entry, calls = MLP_SCORERS.entry("activation"), []

    def counted(model, calib, **options):
        calls.append(1)
        return entry.obj(model, calib, **options)

    monkeypatch.setitem(MLP_SCORERS._entries, "activation", dataclasses.replace(entry, obj=counted))
    summary = run(_recipe(tmp_path, "iterations=2", "schedule.shape=damage", "schedule.kv_groups={}"), progress=False)
    cuts = [m for m in read_jsonl(tmp_path / "run" / "metrics.jsonl")
            if m["event"] == "prune" and m["step"]["mlp_neurons"]]
    assert summary["completed_iterations"] >= 1 and len(calls) == len(cuts) >= 1


def test_a_sharding_that_cannot_run_is_refused_before_loading(tmp_path, capsys):
    assert run_cli("validate", "smoke", "recovery.carry_optimizer=true", "recovery.config.sharding=zero2") == 2
    assert "carry_optimizer cannot carry AdamW moments" in capsys.readouterr().err
    assert run_cli("validate", "smoke", "recovery.config.sharding=fsdp") == 0  # validating needs no launch
    assert run_cli("run", "smoke", f"output_dir={tmp_path / 'r'}", "recovery.config.sharding=fsdp") == 2
    assert "needs several processes" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


PROBE = ["iterations=2", "schedule.kv_groups={}", "recovery.total_steps=8", "recovery.allocation=probe",
         "recovery.probe_steps=2", "recovery.global_schedule=true", "schedule.held_out_samples=4"]


def test_probe_allocation_counts_its_probes_and_spends_the_budget_once(tmp_path):
    summary = run(_recipe(tmp_path, *PROBE), progress=False)
    out = tmp_path / "run"
    events = read_jsonl(out / "metrics.jsonl")
    done = [e["steps"] for e in events if e["event"] == "recovery_done"]
    budgets = [e for e in events if e["event"] == "budget"]
    assert summary["recovery_steps"] == sum(done) == 8
    assert [b["iteration"] for b in budgets] == [1, 2] and [b["steps"] for b in budgets] == done
    first = budgets[0]
    assert len(first["probe_values"]) == 3 and first["decided_steps"] == done[0] >= 2  # the probe is in its steps
    assert set(first["measures_after_cut"]) == set(first["measures_after_probe"]) == {"held_out", "answer", "kl"}
    assert budgets[1]["decided_steps"] == 8 - done[0]  # the last cut: what was left
    assert f"| 2 -> {done[0]}, floor " in (out / "report.md").read_text()


@pytest.mark.parametrize("extra, message", [
    (["recovery.probe_steps=-1"], "recovery.probe_steps"),
    (["recovery.probe_steps=5"], "recovery.probe_steps=5 x iterations=2 is more than recovery.total_steps=8"),
    (["recovery.global_schedule=false"], "recovery.allocation: probe needs recovery.total_steps and"),
])
def test_bad_probe_options_are_one_line_errors_before_any_weights_load(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert run_cli("run", "smoke", f"output_dir={out}", *PROBE, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.slow
def test_a_sigkill_mid_probe_resumes_with_its_steps_counted_once(tmp_path):
    out = tmp_path / "run"
    killed = _cli(out, *PROBE, crash="probe:2")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (out / "iteration_01").is_dir() and not (out / "iteration_02").exists()
    done = _cli(out, *PROBE)
    assert done.returncode == 0, done.stderr[-2000:]
    events = read_jsonl(out / "metrics.jsonl")
    steps = [e["steps"] for e in events if e["event"] == "recovery_done"]
    assert [e["iteration"] for e in events if e["event"] == "budget"] == [1, 2]  # the killed probe's lines dropped
    assert json.loads((out / "summary.json").read_text())["recovery_steps"] == sum(steps) == 8
