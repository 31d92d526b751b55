"""bench/smollm2_budget.py: every recovery is a valid recipe; a finished arm becomes a row of the issue's schema."""

import json

import pytest

from bench import smollm2_budget as budget
from tests.conftest import run_cli


@pytest.mark.parametrize("recovery", budget.RECOVERIES)
@pytest.mark.parametrize("shape", list(budget.SHAPES))
def test_each_arm_is_a_valid_recipe(recovery, shape, capsys):
    cmd = budget.loop_command(1, shape, recovery, 4, 0.7)
    args = [a for a in cmd[cmd.index("run") + 1 : -1] if not a.startswith("model=")]
    assert "seed=1" in args and "target.keep=0.7" in args and f"evaluation.limit={budget.LOOP_LIMIT}" in args
    assert any(a.endswith(f"seed_1/{shape}__{recovery}__x4__keep0.7") for a in args)
    assert run_cli("validate", *args) == 0, capsys.readouterr().err


def test_todays_budget_keeps_todays_steps_and_the_shared_cache():
    cmd = budget.loop_command(0, "one_shot", "seqkd_distill", 1, 0.5)
    assert not any(a.startswith("recovery.config.max_steps") for a in cmd)  # the recipe's 30 x 4 one-shot
    assert f"cache: {budget.WORK}/teacher_data.jsonl" in " ".join(cmd)
    assert "count: 960" in " ".join(budget.loop_command(0, "one_shot", "seqkd_sft", 4, 0.5))


def test_a_finished_arm_is_a_row_with_every_task(tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "ROOT", tmp_path)
    name = budget.run_name("one_shot", "seqkd_distill", 1, 0.5)
    run, ev = tmp_path / budget.WORK / "seed_0" / name, tmp_path / budget.WORK / "seed_0" / "eval" / name
    run.mkdir(parents=True)
    ev.mkdir(parents=True)
    assert budget.row(0, "one_shot", "seqkd_distill", 1, 0.5) is None  # not finished yet
    (run / "summary.json").write_text(json.dumps({"final": {"non_embedding_params": 50}, "tokens": 61000,
                                                  "baseline": {"non_embedding_params": 100}, "recovery_steps": 120,
                                                  "wall_time": 99.0}))
    for i, task in enumerate(("products", "chain_sum", "gsm_symbolic")):
        (ev / f"{task}.json").write_text(json.dumps([{"metrics": {"accuracy": 0.1 * (i + 1)}}]))
    for task in ("nll_gsm", "nll_code", "nll_general"):
        (ev / f"{task}.json").write_text(json.dumps([{"metrics": {"nll": 2.0}}]))
    (ev / "decode.json").write_text(json.dumps({"decode_tokens_per_s": 30.0}))
    (run / "metrics.jsonl").write_text(json.dumps({"event": "eval", "wall_time": 1234.0}) + "\n")
    r = budget.row(0, "one_shot", "seqkd_distill", 1, 0.5)
    assert r["non_embedding_params_kept"] == 0.5 and r["tokens"] == 61000 and r["chain_sum"] == pytest.approx(0.2)
    assert r["wall_s"] == 1234.0  # the run's own clock, not the last (resumed) invocation's summary
    assert set(budget.TASKS) <= set(r) and r["arm"] == "one_shot" and r["recovery"] == "seqkd_distill"
    budget.write([r], {"products": 0.7, "by_seed": []}, {"commands": ["x"], "versions": {}, "cpu": "c"}, tmp_path)
    data = json.loads((tmp_path / "smollm2_budget.json").read_text())
    assert data["runs"] == [r] and data["dense"]["products"] == 0.7
    assert "one_shot, seqkd_distill" in (tmp_path / "smollm2_budget.md").read_text()
