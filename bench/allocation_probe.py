"""Issue 27: the predicting allocation (`allocation: probe`) and the published splits under one WSD, paired
with one-shot and geometric x3 per seed, and how well each damage measure predicts the accuracy a cut
recovers to (Spearman rank correlation).

It runs nothing: the runs are `bench/reproduce.py` grids (the commands are on the page). It reads their
run directories under `--work` and, for the grids run before this issue (34% kept: one-shot and
geometric x3 over 8 seeds), the per-seed accuracies recorded in their results JSON (the same reference
weights, b7a88351, and the same seeds' problems; those runs' directories are not on this machine).

The measures come from the probe runs' `budget` lines: held-out loss on worked solutions, loss on the final
answer's tokens, KL to the dense model on its own greedy generations (pruning/damage.py), each read right
after the cut and after the cut's probe (its first 4 steps). A cut's accuracy is the evaluation after its
recovery; correlations are given over all cuts, within each cut position (iteration 1..4, so that "late
cuts hurt more" does not make the number), and across runs for the last cut against the final accuracy.

    .venv/bin/python bench/allocation_probe.py --work runs/bench_l2
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

try:
    from bench.common import ROOT, write_page
except ImportError:  # run as `python bench/allocation_probe.py`
    from common import ROOT, write_page

SHA = "b7a88351"
SEEDS = list(range(8))
MEASURES = ("held_out", "answer", "kl")
RECORDED = {0.35: "gradual_vs_oneshot_sft_keep0.35_seeds8.json", 0.5: "gradual_vs_oneshot_geometric3_keep0.5.json"}
LABEL = {0.35: "sft_keep0.35", 0.5: "sft"}
# name on the page -> (schedule directory, or None for a recorded-only grid; the recorded variant)
SCHEDULES = {
    "one-shot": ("one_shot", {0.35: "keep 0.35", 0.5: None}),
    "one-shot, one WSD": ("one_shot_wsd", {}),
    "geometric x3 (per-cut cosine)": (None, {0.35: "carry, geometric x3 steps per cut, keep 0.35",
                                             0.5: "carry, geometric x3 steps per cut"}),
    "geometric x3, one WSD": ("gradual_4_geometric3_wsd", {}),
    "linear 12/24/36/48, one WSD": ("gradual_4_linear_wsd", {}),
    "**probe** (predicted split, one WSD)": ("gradual_4_probe", {}),
}


def _events(path: Path) -> list[dict]:
    from prunetune.io import read_jsonl

    return read_jsonl(path) if path.is_file() else []


def load(work: Path, keep: float) -> dict[str, dict[int, dict]]:
    """page name -> seed -> {accuracy, splits, events} for every run found."""
    recorded = json.loads((ROOT / "bench" / "results" / RECORDED[keep]).read_text())["runs"]
    out: dict[str, dict[int, dict]] = {}
    for name, (sched, variants) in SCHEDULES.items():
        runs: dict[int, dict] = {}
        for seed in SEEDS:
            d = work / "gradual_vs_oneshot" / SHA / f"{LABEL[keep]}-light-{sched}-s{seed}" if sched else None
            if d is not None and (d / "summary.json").is_file():
                summ = json.loads((d / "summary.json").read_text())
                events = _events(d / "metrics.jsonl")
                runs[seed] = {"accuracy": (summ["final"] or summ["baseline"])["metrics"]["arith"]["accuracy"],
                              "splits": [e["steps"] for e in events if e["event"] == "recovery_done"],
                              "events": events, "source": "run"}
                continue
            v = variants.get(keep, "-")
            hit = [r for r in recorded if r["seed"] == seed and r["recovery"] == "sft" and r["variant"] == v
                   and r["schedule"] in ("one_shot", "gradual_4")]
            if hit:
                runs[seed] = {"accuracy": hit[0]["accuracy"], "splits": None, "events": [], "source": "recorded"}
        if runs:
            out[name] = runs
    return out


def paired(a: dict[int, dict], b: dict[int, dict]) -> dict | None:
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    d = [a[s]["accuracy"] - b[s]["accuracy"] for s in seeds]
    return {"n": len(d), "mean": statistics.fmean(d), "se": statistics.stdev(d) / math.sqrt(len(d)),
            "ahead": sum(x > 0 for x in d), "ties": sum(x == 0 for x in d)}


def spearman(x: list[float], y: list[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(spearmanr(x, y).statistic)


def cuts(runs: dict[int, dict]) -> list[dict]:
    """One row per cut of the probe runs: iteration, each measure after the cut and after the probe, the
    accuracy after the cut's recovery, the run's final accuracy and how many cuts it had."""
    rows = []
    for seed, r in runs.items():
        evals = {e["iteration"]: e["metrics"]["arith"]["accuracy"] for e in r["events"] if e["event"] == "eval"}
        budgets = [e for e in r["events"] if e["event"] == "budget" and "measures_after_cut" in e]
        for b in budgets:
            row = {"seed": seed, "iteration": b["iteration"], "last": b["iteration"] == len(budgets),
                   "accuracy": evals.get(b["iteration"]), "final": r["accuracy"], "steps": b["steps"]}
            for m in MEASURES:
                row[f"{m}@cut"] = b["measures_after_cut"][m]
                row[f"{m}@probe"] = (b.get("measures_after_probe") or {}).get(m)
            rows.append(row)
    return rows


def correlations(rows: list[dict]) -> dict[str, dict]:
    out = {}
    for m in MEASURES:
        for when in ("cut", "probe"):
            key = f"{m}@{when}"
            ok = [r for r in rows if r[key] is not None and r["accuracy"] is not None]
            within = [spearman([r[key] for r in ok if r["iteration"] == i], [r["accuracy"] for r in ok if r["iteration"] == i])
                      for i in sorted({r["iteration"] for r in ok})]
            within = [w for w in within if w is not None]
            last = [r for r in ok if r["last"]]
            out[key] = {"all_cuts": spearman([r[key] for r in ok], [r["accuracy"] for r in ok]), "n": len(ok),
                        "within_position_mean": statistics.fmean(within) if within else None,
                        "last_cut_vs_final": spearman([r[key] for r in last], [r["final"] for r in last]),
                        "n_last": len(last)}
    return out


def _f(x, fmt="+.3f"):
    return "-" if x is None else format(x, fmt)


def page(results: dict, command: str) -> str:
    lines = ["# allocation_probe: the predicted split vs the hand-set ones, and which damage measure predicts "
             "recovery", "",
             "Reference model (`b7a88351`), sft, 120 steps in all, 4 cuts (a whole layer and MLP neurons in the "
             "first, MLP neurons in each), arith accuracy on 300 held-out problems per seed (greedy). Paired "
             "differences are per seed (same seed: same data, same problems); se is the standard error of the "
             "mean difference. `recorded`: per-seed accuracies of grids run before this issue, read from their "
             "results JSON.", ""]
    for keep, res in results.items():
        if not isinstance(keep, float):
            continue
        kept = {0.35: "34%", 0.5: "50%"}[keep]
        lines += [f"## {kept} of the non-embedding parameters kept (target.keep {keep})",
                  "", "| schedule | steps per cut | arith accuracy | " + " | ".join(f"minus {r}, paired" for r in REFS)
                  + " | seeds ahead of one-shot |", "|---|---|---|" + "---|" * (len(REFS) + 1)]
        for name, row in res["table"].items():
            lines.append(f"| {name} | {row['splits']} | {row['accuracy']} | "
                         + " | ".join(row["vs"][r] for r in REFS) + f" | {row['ahead']} |")
        lines.append("")
    lines += ["## Which measure predicts the accuracy a cut recovers to", "",
              "Spearman rank correlation of each measure with the accuracy after the cut's recovery, over the "
              "probe runs' cuts (both grids; negative: a lower measure goes with a higher accuracy). "
              "`within position`: the mean of the correlations among the cuts at the same iteration "
              "(1..4); `last cut vs final`: the last cut's measure against the run's final accuracy.", "",
              "| measure | read | all cuts | within position | last cut vs final |", "|---|---|---|---|---|"]
    for key, c in results["correlations"].items():
        m, when = key.split("@")
        lines.append(f"| {m} | {'right after the cut' if when == 'cut' else 'after the 4-step probe'} | "
                     f"{_f(c['all_cuts'])} (n={c['n']}) | {_f(c['within_position_mean'])} | "
                     f"{_f(c['last_cut_vs_final'])} (n={c['n_last']}) |")
    notes = ROOT / "bench" / "results" / "allocation_probe.notes.md"
    if notes.is_file():
        lines += ["", notes.read_text().rstrip()]
    lines += ["", "## Commands", "", "```bash", *results["grid_commands"], command, "```", ""]
    return "\n".join(lines)


REFS = ("one-shot", "one-shot, one WSD", "geometric x3 (per-cut cosine)", "geometric x3, one WSD")
"""What every row is paired with."""


def summarise(runs: dict[str, dict[int, dict]]) -> dict:
    table = {}
    for name, r in runs.items():
        acc = [x["accuracy"] for x in r.values()]
        splits = sorted({"/".join(map(str, x["splits"])) for x in r.values() if x["splits"]})
        pairs = {ref: paired(r, runs[ref]) if ref in runs and ref != name else None for ref in REFS}
        vs1 = pairs["one-shot"]
        src = {x["source"] for x in r.values()}
        table[name] = {
            "n": len(acc), "mean": statistics.fmean(acc), "std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "splits": ("; ".join(splits) if len(splits) <= 3 else f"{len(splits)} different: " + "; ".join(splits))
            if splits else ("120" if name == "one-shot" else "3/9/27/81"),
            "accuracy": f"{statistics.fmean(acc):.3f} ± {statistics.stdev(acc) if len(acc) > 1 else 0:.3f} "
                        f"(n={len(acc)}{', recorded' if src == {'recorded'} else ''})",
            "vs": {ref: f"{d['mean']:+.3f} (se {d['se']:.3f}, n={d['n']})" if d else "-" for ref, d in pairs.items()},
            "ahead": f"{vs1['ahead']}/{vs1['n']}" if vs1 else "-",
            "paired": pairs,
            "per_seed": {s: {"accuracy": x["accuracy"], "splits": x["splits"], "source": x["source"]}
                         for s, x in sorted(r.items())},
        }
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default="runs/bench_l2")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "allocation_probe"))
    a = p.parse_args(argv)
    work = (ROOT / a.work).resolve()
    results: dict = {}
    all_cuts: list[dict] = []
    commands: list[str] = []
    for keep in (0.35, 0.5):
        runs = load(work, keep)
        results[keep] = {"table": summarise(runs)}
        probe = runs.get("**probe** (predicted split, one WSD)", {})
        all_cuts += [{**c, "keep": keep} for c in cuts(probe)]
    for g in sorted((work / "gradual_vs_oneshot" / SHA).glob("grids_sft_keep*.json")):
        commands += [x["command"] for x in json.loads(g.read_text())]
    results["correlations"] = correlations(all_cuts)
    results["cuts"] = all_cuts
    results["grid_commands"] = list(dict.fromkeys(commands))
    command = ".venv/bin/python bench/allocation_probe.py " + " ".join(argv if argv is not None else sys.argv[1:])
    serial = {str(k) if isinstance(k, float) else k: v for k, v in results.items()}
    write_page(a.out, serial, page(results, command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
