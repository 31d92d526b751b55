"""bench/smollm2.py's helpers: the control's equal budget, and the table built from finished arms."""

import importlib.util
import json
from pathlib import Path

import pytest

from bench.common import cli

_PATH = Path(__file__).resolve().parents[2] / "bench" / "smollm2.py"
CLI = cli()
_spec = importlib.util.spec_from_file_location("bench_smollm2", _PATH)
smollm2 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(smollm2)


def test_control_trains_the_dense_model_on_the_one_shot_budget(tmp_path):
    rec = smollm2._recipe()
    cmds, todo = smollm2.control_commands(Path("dense"), tmp_path / "ctl", rec, steps=5)
    assert todo == cmds  # nothing trained yet
    recover = cmds[0]
    assert recover[: len(CLI) + 1] == [*CLI, "recover"] and recover[recover.index("--teacher") + 1] == "dense"
    assert f"max_steps={5 * rec['iterations']}" in recover
    records = (tmp_path / "ctl" / "data.jsonl").read_text().splitlines()
    assert len(records) == rec["recovery"]["chunk_size"] * rec["iterations"]
    # the recipe's evaluation (one call per task, each with its own options) and the two NLL tasks
    evals = [c for c in cmds[1:] if c[len(CLI)] == "eval"]
    assert [c[c.index("--tasks") + 1] for c in evals] == [
        *rec["evaluation"]["tasks"],
        "perplexity",
        "perplexity",
    ]
    assert "--task-option=max_terms=3" in evals[1] and "--task-option=max_terms=2" in evals[0]


def test_one_shot_arm_is_the_recipe_with_one_shot():
    cmd = smollm2.loop_command(Path("m"), Path("o"), "one_shot", 7)
    assert cmd[: len(CLI) + 2] == [*CLI, "run", smollm2.RECIPE]
    assert "one_shot=true" in cmd and "recovery.config.max_steps=7" in cmd
    assert "one_shot=true" not in smollm2.loop_command(Path("m"), Path("o"), "gradual_4", None)


def _eval_file(path: Path, task: str, **metrics):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([{"task": task, "n": 10, "metrics": metrics}]))


def _summary(work: Path, arm: str, params: int, acc: float):
    base = {"params": 1000, "non_embedding_params": 800, "metrics": {"products": {"accuracy": 0.6}}}
    final = {
        "params": params,
        "non_embedding_params": params - 200,
        "metrics": {"products": {"accuracy": acc}},
    }
    summ = {"baseline": base, "final": final, "recovery_steps": 8, "tokens": 99, "wall_time": 12.0}
    (work / arm).mkdir(parents=True)
    (work / arm / "summary.json").write_text(json.dumps(summ))
    events = [{"event": "baseline", "iteration": 0, "non_embedding_params": 800, "metrics": base["metrics"]}]
    events += [
        {"event": "recover", "iteration": 1},
        {"event": "eval", "iteration": 1, "metrics": final["metrics"]},
    ]
    (work / arm / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def test_collect_and_write_a_table_from_finished_arms(tmp_path):
    work = tmp_path / "work"
    _summary(work, "gradual_4", 600, 0.4)
    _summary(work, "one_shot", 600, 0.5)
    _eval_file(work / "dense_control" / "eval" / "products.json", "products", accuracy=0.7)
    _eval_file(work / "eval" / "dense" / "nll_code.json", "perplexity", nll=1.5)
    rec = {"evaluation": {"tasks": ["products"]}}
    data = smollm2.collect(work, rec)
    rows = {r["model"]: r for r in data["rows"]}
    assert list(rows) == ["dense", "gradual_4", "one_shot", "dense_control"]
    assert rows["dense"]["products"] == 0.6 and rows["dense"]["nll_code"] == 1.5
    assert rows["gradual_4"]["products"] == 0.4 and rows["gradual_4"]["kept"] == pytest.approx(0.6)
    assert rows["gradual_4"]["non_embedding_kept"] == pytest.approx(0.5)
    assert rows["dense_control"]["products"] == 0.7 and rows["dense_control"]["kept"] == 1.0
    assert rows["dense_control"]["recovery_steps"] == 8  # the one-shot run's budget
    assert rows["one_shot"]["nll_gsm"] is None  # not measured yet: shown as "-", never as a number
    assert [e["event"] for e in data["gradual_iterations"]] == ["baseline", "eval"]

    meta = {"model": "m", "recovery": "distill", "tasks": ["products"], "commands": ["cmd"]}
    smollm2.write_results(data, meta | {"versions": {}, "cpu": "cpu"}, tmp_path / "res")
    md = (tmp_path / "res" / "smollm2.md").read_text()
    assert "| one_shot | 0.600 | 0.500 | 0.500 | - | - | 8 | 12 |" in md
    assert json.loads((tmp_path / "res" / "smollm2.json").read_text())["rows"][3]["products"] == 0.7
