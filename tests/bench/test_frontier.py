"""bench/frontier.py: both sides plan on the same total budget; the area under a frontier."""

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "bench" / "frontier.py"
_spec = importlib.util.spec_from_file_location("bench_frontier", _PATH)
frontier = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = frontier
_spec.loader.exec_module(frontier)


def test_area_is_the_trapezoid_over_the_sizes():
    assert abs(frontier.area([(0.5, 1.0), (0.8, 1.0)]) - 0.3) < 1e-12
    assert abs(frontier.area([(0.8, 0.0), (0.5, 1.0)]) - 0.15) < 1e-12


def test_one_shot_runs_share_the_gradual_runs_total_and_plan(tmp_path, capsys):
    from tests.conftest import run_cli

    (gradual,) = frontier.commands(tmp_path, 0, None)
    ones = frontier.commands(tmp_path, 0, [0.729, 0.625, 0.495])
    assert len(ones) == 3 and "export.keeps=[0.8, 0.65, 0.5]" in gradual[0]
    total = 0
    for cmd, _ in ones:
        args = cmd[cmd.index("run") + 1 :]
        steps = int(next(a for a in args if a.startswith("recovery.config.max_steps=")).split("=")[1])
        total += steps * 4  # one_shot=true spends iterations x the per-iteration steps
        plan_args = [a for a in args if not a.startswith(("output_dir=", "--"))]
        assert run_cli("plan", *plan_args) == 0, capsys.readouterr().err
    assert total == frontier.TOTAL_STEPS
