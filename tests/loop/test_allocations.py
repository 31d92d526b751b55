"""Allocations as registered kinds: options like scorers', old flat keys still load, a plugin allocation
works through plan and the cost planner, and a run measures only what its allocation reads."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from prunetune.config import build
from prunetune.errors import UserError
from prunetune.io import read_jsonl
from prunetune.loop import run
from prunetune.loop.allocations import ALLOCATIONS, Budget, spread
from prunetune.loop.budget import planned_steps
from prunetune.loop.recipe import Recipe, RecoveryConfig, load_recipe
from tests.conftest import run_cli
from tests.loop.test_loop import FAST, SMOKE


def test_flat_keys_of_older_recipes_load_as_the_allocation_options():
    old = build(RecoveryConfig, {"allocation": "geometric", "growth": 2.5, "tolerance": 0.0, "check_every": 5,
                                 "split": None})
    new = build(RecoveryConfig, {"allocation": "geometric", "allocation_options": {"growth": 2.5}})
    assert old == new and old.allocation_options == {"growth": 2.5}
    assert build(RecoveryConfig, {"allocation": "split", "split": [1, 2]}).allocation_options == {"steps": [1, 2]}
    rec = build(RecoveryConfig, {"allocation": "recovered", "tolerance": 0.02})
    assert rec.allocation_options == {"tolerance": 0.02, "check_every": 5}  # the defaults filled in
    # a recipe.yaml saved by an older version (every flat key at its default) reads as today's
    saved = Recipe().to_dict()
    saved["recovery"].pop("allocation_options")
    saved["recovery"].update(growth=3.0, tolerance=0.0, check_every=5, split=None)
    assert build(Recipe, saved).to_dict() == Recipe().to_dict()


@pytest.mark.parametrize("data, message", [
    ({"allocation": "damage", "growth": 2.0}, "recovery.growth is an option of recovery.allocation: geometric"),
    ({"allocation": "geometric", "growth": 0}, "recovery.growth: must be greater than 0"),
    ({"allocation": "geometric", "growth": 2, "allocation_options": {"growth": 3}}, "recovery.growth: also given"),
    ({"allocation": "geometric", "allocation_options": {"grow": 3}}, "recovery.allocation_options.grow"),
    ({"allocation": "equal", "allocation_options": {"growth": 3}}, "takes no options"),
    ({"allocation": "geometrik"}, r"recovery.allocation: unknown allocation 'geometrik' \(did you mean 'geometric'"),
])
def test_bad_allocation_options_name_the_key(data, message):
    with pytest.raises(UserError, match=message):
        build(RecoveryConfig, data, "recovery")


def test_ls_lists_allocations_with_their_options(capsys):
    assert run_cli("ls") == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("allocations:"))
    assert all(n in line for n in ("damage", "equal", "geometric", "recovered", "split"))
    assert run_cli("ls", "-v") == 0
    out = capsys.readouterr().out
    listing = out.split("\nallocations:")[1].split("\n\n")[0]
    assert "geometric:" in listing and "growth" in listing and "check_every" in listing
    assert "recovery.allocation_options.tolerance" in out.split("recipe keys")[1]


@dataclass
class _LastOptions:
    last: int = 5
    """Steps of the last cut; every other cut gets one."""


@pytest.fixture
def last_heavy():
    """An allocation registered from outside prunetune, as a plugin would."""

    @ALLOCATIONS.register("test_last_heavy", options=_LastOptions)
    class LastHeavy:
        """one step per cut, `last` for the last"""

        measures = frozenset()
        up_front = True

        def __init__(self, options):
            self.options = options

        def steps(self, b: Budget) -> int:
            return self.options.last if b.n_future == 0 else spread(b, 0.0)

        def stop(self, b):
            return None

        def check(self, ctx):
            if ctx.total_steps is None:
                raise UserError("recovery.allocation: test_last_heavy needs recovery.total_steps")

    yield "test_last_heavy"
    ALLOCATIONS._entries.pop("test_last_heavy")


def test_a_plugin_allocation_is_planned_and_priced_by_its_entry(last_heavy, capsys):
    recipe = load_recipe("demo", ["recovery.total_steps=120", f"recovery.allocation={last_heavy}",
                                  "recovery.allocation_options.last=50"])
    assert planned_steps(recipe.recovery, 4) == [1, 1, 1, 50]
    assert run_cli("plan", "demo", "recovery.total_steps=120", f"recovery.allocation={last_heavy}",
                   "recovery.allocation_options.last=50", "--gpus", "1") == 0
    out = capsys.readouterr().out
    rows = [r for r in out.split("cost on")[0].splitlines() if r.strip()[:1].isdigit()]
    assert [r.rsplit("sft: ", 1)[1] for r in rows] == ["1 of 120 steps"] * 3 + ["50 of 120 steps"]
    tokens = [r.split()[1] for r in out.split("cost on")[1].splitlines() if r[:1].isdigit()]
    assert tokens[0] == tokens[1] == tokens[2] != tokens[3]  # the cost planner prices each cut's own steps
    assert run_cli("validate", "demo", f"recovery.allocation={last_heavy}") == 2
    assert "test_last_heavy needs recovery.total_steps" in capsys.readouterr().err


@pytest.mark.parametrize("allocation, measured", [("geometric", False), ("damage", True)])
def test_a_run_measures_only_what_its_allocation_reads(tmp_path, monkeypatch, allocation, measured):
    import prunetune.loop.loop as loop_module

    calls = []
    real = loop_module.held_out_loss
    monkeypatch.setattr(loop_module, "held_out_loss", lambda *a, **k: calls.append(1) or real(*a, **k))
    recipe = load_recipe(SMOKE, [f"output_dir={tmp_path / 'run'}", *FAST, "iterations=2", "schedule.kv_groups={}",
                                 "recovery.total_steps=4", f"recovery.allocation={allocation}"])
    assert run(recipe, progress=False)["recovery_steps"] == 4
    prunes = [m for m in read_jsonl(Path(recipe.output_dir) / "metrics.jsonl") if m["event"] == "prune"]
    assert bool(calls) is measured
    assert [p["loss_before"] is not None for p in prunes] == [measured, measured]
