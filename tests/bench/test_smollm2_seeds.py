"""bench/smollm2_seeds.py: each arm's commands validate as recipes; the table's mean over finished seeds."""

import json

from bench import smollm2_seeds as seeds
from tests.conftest import run_cli


def test_each_arm_is_a_valid_recipe_with_the_seed(tmp_path, capsys):
    for arm in seeds.ARMS:
        loop, code, gsm = seeds.arm_commands(tmp_path / "model", tmp_path, 2, arm)
        args = loop[loop.index("run") + 1 : -1]
        assert "seed=2" in args and f"output_dir={tmp_path / 'seed_2' / arm}" in args
        assert run_cli("validate", *[a for a in args if not a.startswith("model=")]) == 0, capsys.readouterr().err
        assert code[code.index("eval") + 1] == str(tmp_path / "seed_2" / arm / "final")
        assert gsm[-1] == str(tmp_path / "seed_2" / "eval" / arm / "nll_gsm.json")


def _finished(work, seed, arm, products):
    run = seeds.run_dir(work, seed, arm)
    run.mkdir(parents=True)
    acc = lambda p: {"products": {"accuracy": p}, "chain_sum": {"accuracy": 0.1}}  # noqa: E731
    (run / "summary.json").write_text(json.dumps({"final": {"metrics": acc(products), "params": 60},
                                                  "baseline": {"metrics": acc(0.7), "params": 100}}))
    ev = seeds.eval_dir(work, seed, arm)
    ev.mkdir(parents=True)
    for t in ("code", "gsm"):
        (ev / f"nll_{t}.json").write_text(json.dumps([{"metrics": {"nll": 2.0}}]))


def test_rows_and_the_table_over_seeds(tmp_path):
    _finished(tmp_path, 1, "gradual_4_split", 0.3)
    _finished(tmp_path, 2, "gradual_4_split", 0.5)
    rows = [r for s in (1, 2) for arm in seeds.ARMS if (r := seeds.row(tmp_path, s, arm)) is not None]
    assert [(r["seed"], r["products"], r["kept"]) for r in rows] == [(1, 0.3, 0.6), (2, 0.5, 0.6)]
    seeds.write(rows, {"commands": ["x"], "versions": {}, "cpu": "cpu"}, tmp_path)
    table = (tmp_path / "smollm2_seeds.md").read_text()
    assert "| gradual_4_split | 0.400 ± 0.141 (n=2, 0.30-0.50) |" in table
    assert "| one_shot | - |" in table  # no finished one-shot run: no number
