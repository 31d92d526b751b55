"""Seconds per solved problem in the run report (table column and plot), `prunetune pick` and the demo table."""

import json

from prunetune.loop.demo import demo_table
from prunetune.loop.report import write_report
from tests.conftest import run_cli

# (non-embedding params, accuracy, seconds per solved problem) of dense and two iterations
POINTS = [(100, 0.9, 2.0), (60, 0.8, 1.5), (30, 0.5, None)]


def _fake_run(root, timed: bool = True):
    """A run directory as the loop writes it, with the evaluation metrics given above (nothing trained)."""
    def ev(i, n, acc, spp):
        m = {"arith": {"accuracy": acc, "mean_length": 40.0, "generation_seconds": 3.0}}
        if spp is not None and timed:
            m["arith"]["seconds_per_solved"] = spp
        return {"iteration": i, "params": n + 20, "non_embedding_params": n, "metrics": m}

    (root / "baseline").mkdir(parents=True)
    (root / "baseline" / "eval.json").write_text(json.dumps({**ev(0, *POINTS[0]), "shape": {}}))
    for i, p in enumerate(POINTS[1:], 1):
        d = root / f"iteration_{i:02d}" / "state"
        d.mkdir(parents=True)
        (d / "eval.json").write_text(json.dumps(ev(i, *p)))
        (d / "loop_state.json").write_text("{}")
    (root / "metrics.jsonl").write_text('{"event": "baseline", "iteration": 0}\n')
    (root / "recipe.yaml").write_text("model: reference\n")
    return root


def test_report_shows_seconds_per_solved_and_plots_accuracy_against_it(tmp_path):
    run = _fake_run(tmp_path / "run")
    md = write_report(run).read_text()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines() if line.startswith("|")]
    head = rows[0]
    col = head.index("arith s/solved")
    assert [r[col] for r in rows[2:]] == ["2.000", "1.500", "-"]  # dense, iteration 1, 2 (nothing solved)
    assert (run / "accuracy_vs_seconds_arith.png").stat().st_size > 0
    assert "accuracy_vs_seconds_arith.png" in md and (run / "accuracy_vs_params_arith.png").is_file()


def test_pick_by_seconds_per_solved(tmp_path, capsys):
    run = _fake_run(tmp_path / "run")
    assert run_cli("pick", run, "--max-seconds-per-solved", "1.8") == 0
    out = capsys.readouterr().out
    assert "s/solved" in out and f"picked: {run / 'iteration_01'}" in out
    assert run_cli("pick", run, "--max-seconds-per-solved", "1.0") == 1  # none is that fast
    assert run_cli("pick", run, "--max-seconds-per-solved", "5", "--min-accuracy", "0.85") == 1
    capsys.readouterr()
    old = _fake_run(tmp_path / "old", timed=False)  # evaluated before prunetune timed generation
    assert run_cli("pick", old, "--max-seconds-per-solved", "5") == 2
    err = capsys.readouterr().err.strip()
    assert "--max-seconds-per-solved" in err and "recorded no seconds per solved problem" in err and "\n" not in err


def test_demo_table_prints_seconds_per_solved_for_dense_gradual_and_one_shot():
    rows = [
        {"run": "dense", "params": 120, "non_embedding_params": 100, "accuracy": 0.9, "mean_length": 40.0,
         "seconds_per_solved": 2.0, "decode_tps": 50.0},
        {"run": "gradual", "params": 70, "non_embedding_params": 50, "accuracy": 0.8, "mean_length": 44.0,
         "seconds_per_solved": 1.25, "decode_tps": 80.0},
        {"run": "one-shot", "params": 70, "non_embedding_params": 50, "accuracy": 0.6, "mean_length": 52.5,
         "seconds_per_solved": None, "decode_tps": 80.0},
    ]
    import re

    lines = [re.split(r"\s{2,}", line.strip()) for line in demo_table(rows, "arith").splitlines()]
    head = lines[0]
    assert "s/solved" in head and "tok/problem" in head
    by_run = {cells[0]: cells for cells in lines[1:] if cells[0] in ("dense", "gradual", "one-shot")}
    col = head.index("s/solved")
    assert [by_run[r][col] for r in ("dense", "gradual", "one-shot")] == ["2.000", "1.250", "-"]
    assert by_run["gradual"][head.index("tok/problem")] == "44.0"
