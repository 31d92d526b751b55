"""A shortened demo (the shipped recipe, 2 iterations, a few steps) runs end to end: both runs, the table, the reports."""

import json
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from prunetune.loop.demo import RECIPE, run_demo


@pytest.mark.slow
def test_short_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    result = run_demo(
        RECIPE,
        [
            f"output_dir={out}",
            "iterations=2",
            "schedule.layers={1: 1}",
            "recovery.config.max_steps=2",
            "recovery.chunk_size=32",
            "evaluation.limit=16",
            "evaluation.max_new_tokens=48",
            "prune.calibration_samples=8",
        ],
        progress=False,
    )
    printed = capsys.readouterr().out
    assert "gradual" in printed and "one-shot" in printed and "decode tok/s" in printed
    rows = {r["run"]: r for r in result["rows"]}
    assert rows["dense"]["accuracy"] >= 0.8  # the shipped reference, on 16 held-out problems
    for name, d in (("gradual", out), ("one-shot", Path(f"{out}-oneshot"))):
        summary = json.loads((d / "summary.json").read_text())
        assert summary["non_embedding_params_kept"] <= 0.52
        assert rows[name]["non_embedding_params"] == summary["final"]["non_embedding_params"]
        assert (d / "report.md").is_file() and (d / "accuracy_vs_params_arith.png").is_file()
        AutoModelForCausalLM.from_pretrained(d / "final")
    one = json.loads((Path(f"{out}-oneshot") / "summary.json").read_text())
    grad = json.loads((out / "summary.json").read_text())
    assert one["recovery_steps"] == grad["recovery_steps"] and one["completed_iterations"] == 1
    assert "demo-oneshot" in (out / "report.md").read_text()  # both runs on one report
    # the family: every requested size written and printed as the frontier beside the one-shot point
    assert [f["keep"] for f in grad["family"]] == [0.8, 0.65, 0.5]
    assert "frontier" in printed and "gradual family/keep_0.50" in printed
    assert "Family (servable checkpoints" in (out / "report.md").read_text()
