"""The run report and metrics record every width a unit changes: hidden size on dense runs, experts and
expert width on MoE runs (a Mixtral-shaped run used to read "intermediate 0" on every row)."""

from pathlib import Path

from prunetune.io import read_jsonl
from prunetune.loop import load_recipe, run


def _table(out: Path) -> tuple[list[str], list[list[str]]]:
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in (out / "report.md").read_text().splitlines() if line.startswith("| ")]
    return rows[0], rows[1:]


def test_a_mixtral_run_records_and_reports_its_experts_and_expert_width(tmp_path):
    recipe = load_recipe("smoke", [f"output_dir={tmp_path / 'run'}", "model=tiny-random-mixtral",
                                   "schedule.kv_groups={}", "schedule.experts={1: 1}", "recovery.method=none"])
    run(recipe, progress=False)
    out = Path(recipe.output_dir)
    evals = [m for m in read_jsonl(out / "metrics.jsonl") if m["event"] in ("baseline", "eval")]
    experts = [m["num_experts"] for m in evals]
    widths = [m["moe_intermediate_size"] for m in evals]
    assert experts[0] - experts[-1] == 1 and widths[-1] < widths[0]  # one expert out, the width cut for the target
    assert all(m["hidden_size"] == evals[0]["hidden_size"] for m in evals)
    head, rows = _table(out)
    assert {"hidden", "experts", "expert width"} <= set(head) and "intermediate" not in head  # no dense MLP here
    by_iter = {r[0]: r for r in rows}
    assert by_iter["dense"][head.index("experts")] == str(experts[0])
    assert by_iter["2"][head.index("expert width")] == str(widths[-1])


def test_a_hidden_pruned_dense_run_reports_its_hidden_size(tmp_path):
    recipe = load_recipe("smoke", [f"output_dir={tmp_path / 'run'}", "schedule.hidden={1: 8}", "recovery.method=none"])
    run(recipe, progress=False)
    head, rows = _table(Path(recipe.output_dir))
    by_iter = {r[0]: r for r in rows}
    col = head.index("hidden")
    assert int(by_iter["dense"][col]) - int(by_iter["2"][col]) == 8
    assert "experts" not in head
