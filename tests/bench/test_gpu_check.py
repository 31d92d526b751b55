"""bench/gpu_check.py --dry-run: the accelerator check's own code, end to end on CPU with tiny shapes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import gpu_check

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.py"


def _run(tmp_path, *args):
    out = tmp_path / "gpu_check"
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out), "--work", str(tmp_path / "w"),
                           *args], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.with_suffix(".json").read_text()), out.with_suffix(".md").read_text()


@pytest.mark.slow
def test_dry_run_measures_every_phase_of_both_pipelines_against_the_planner(tmp_path):
    res, md = _run(tmp_path)
    assert res["mode"] == "cpu dry-run" and md.startswith("# gpu_check: CPU DRY-RUN")
    assert res["probe"]["packages"]["torch"]["importable"] and res["probe"]["matmul_tflops"] > 0
    for key in ("grpo", "cpt"):
        phases = res["pipelines"][key]["phases"]
        bad = [p for p in phases if p["status"] != "ok" and not p["status"].startswith("skipped")]
        assert not bad, bad
        done = {(p["phase"], p["iteration"]) for p in phases if p["status"] == "ok"}
        for it in (1, 2):  # two loop iterations, each phase timed on its own
            assert {("scoring", it), ("surgery", it), ("recovery", it), ("evaluation", it),
                    ("checkpoint_save", it)} <= done, (key, done)
        shrink = [p["intermediate_size"] for p in phases if p["phase"] == "surgery"]
        assert shrink[0][1] < shrink[0][0] and shrink[1][0] == shrink[0][1] and shrink[1][1] < shrink[1][0]
        assert all(p["seconds"] >= 0 for p in phases if "seconds" in p)
        recs = [p for p in phases if p["phase"] == "recovery"]
        assert all(p["steps"] >= 1 and p["tokens"] > 0 and p["planned"]["train_tokens"] > 0 for p in recs)
        assert res["pipelines"][key]["planner"]["text"].startswith("cost on 1 x H200")
    grpo = {p["phase"]: p for p in res["pipelines"]["grpo"]["phases"]}
    assert grpo["rollout_hf"]["tokens_per_s"] > 0 and grpo["rollout_hf"]["planned"]["tokens_per_s"] > 0
    assert grpo["rollout_vllm"]["status"] == "skipped: --dry-run runs without vLLM"
    cpt = [p for p in res["pipelines"]["cpt"]["phases"] if p["phase"].startswith("recovery")]
    fsdp = [p for p in cpt if p["status"] == "ok" and p["sharding"] == "fsdp"]
    assert len(fsdp) == 2 and all(p["gather_s"] is not None for p in fsdp)  # FSDP2 on one rank, gathered back
    assert any(p["phase"] == "recovery_none" and p["status"] == "ok" and p["gather_s"] is None for p in cpt)
    assert all(0 < p["planned"]["mfu"] < 1 for p in cpt if p["status"] == "ok")
    assert "| " not in md.split("\n", 1)[0] and "Measured against `prunetune plan" in md


@pytest.mark.slow
def test_a_budget_too_short_skips_every_phase_with_a_note_and_still_writes(tmp_path):
    res, md = _run(tmp_path, "--budget-s", "1")
    for key in ("grpo", "cpt"):
        phases = res["pipelines"][key]["phases"]
        assert phases[0]["phase"] == "build" and phases[0]["status"].startswith("skipped: 0 s left of the budget")
        assert all(p["status"].startswith("skipped") for p in phases)
    assert "skipped: 0 s left" in md


def test_the_gpu_runs_recipes_validate_and_plan_on_the_real_shapes(tmp_path):
    """What the device run loads before any model is built: both paper recipes with the check's overrides,
    on the real shapes, validated and priced by the planner (a bad override would cost device time)."""
    for recipe, shape, overrides in (("paper-qwen2.5-7b-grpo", "qwen2.5-1.5b", [*gpu_check.COMMON, *gpu_check.GRPO]),
                                     ("paper-llama3-8b-cpt", "llama-3-8b", [*gpu_check.COMMON, *gpu_check.CPT])):
        path = tmp_path / f"{shape}.json"
        path.write_text(json.dumps(gpu_check.SHAPES[shape]))
        r, steps, shapes = gpu_check.load(recipe, overrides, path)
        assert len(steps) == 2 and shapes[0].intermediate_size == gpu_check.SHAPES[shape]["intermediate_size"]
        assert shapes[2].intermediate_size == shapes[0].intermediate_size - 2000  # the paper's 1000 per iteration
        plan = gpu_check.planned(r, shapes, "h200")
        its = plan["iterations"]
        assert its["1"]["train_tokens"] > 0 and its["1"]["train_s"] > 0 and not plan["warnings"]
        assert 0 < its["1"]["memory_gb"] < 141 and its["dense"]["eval_s"] > 0
        assert (its["1"]["rollout_s"] > 0) == (recipe.endswith("grpo"))
