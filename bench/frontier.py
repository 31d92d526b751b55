"""The size frontier at equal total compute: one gradual run exporting a family of 3 sizes vs three
one-shot runs (one per size) that share the same total recovery budget.

The gradual side is the demo recipe (4 iterations, 60 sft steps each, 240 in all) with export.keeps;
each one-shot run cuts straight to one of the family's sizes and trains 80 steps (240 / 3) on as many
records per step. Accuracy is the arith task on 500 held-out problems; the area under each frontier
is the trapezoid over the fraction of non-embedding parameters kept, from the smallest to the largest size.

    .venv/bin/python bench/frontier.py --seeds 0 1 2 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

try:
    from bench.common import ROOT, cli, cpu_name, versions
except ImportError:  # run as `python bench/frontier.py`
    from common import ROOT, cli, cpu_name, versions

KEEPS = (0.8, 0.65, 0.5)
TOTAL_STEPS, STEPS_PER_ITER, RECORDS_PER_STEP = 240, 60, 16


def _run(cmd: list[str], log: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    with open(log, "w") as f:
        subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, check=True)


def commands(work: Path, seed: int, kept: list[float] | None) -> list[tuple[list[str], Path]]:
    """The gradual run, or (given the family's kept fractions) the three one-shot runs."""
    base = [*cli(), "run", "--no-progress", "demo", f"seed={seed}", f"recovery.config.seed={seed}"]
    if kept is None:
        out = work / f"gradual-s{seed}"
        return [([*base, f"output_dir={out}", f"export.keeps=[{', '.join(map(str, KEEPS))}]"], out)]
    per = TOTAL_STEPS // len(KEEPS)  # one-shot multiplies the per-iteration budget by `iterations` (4)
    runs = []
    for keep, k in zip(KEEPS, kept):
        out = work / f"oneshot{keep:g}-s{seed}"
        runs.append(([*base, f"output_dir={out}", "one_shot=true", f"target.keep={k + 1e-4:.4f}", "export.keeps=[]",
                      f"recovery.config.max_steps={per // 4}", f"recovery.chunk_size={per // 4 * RECORDS_PER_STEP}"], out))
    return runs


def area(points: list[tuple[float, float]]) -> float:
    pts = sorted(points)
    return sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(pts, pts[1:]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--work", default="runs/bench_frontier")
    p.add_argument("--results", default=str(ROOT / "bench" / "results"))
    a = p.parse_args(argv)
    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)

    def go(job):
        cmd, out = job
        if not (out / "summary.json").is_file():
            _run(cmd, out.with_suffix(".log"))
        return json.loads((out / "summary.json").read_text())

    with ThreadPoolExecutor(a.jobs) as pool:
        grads = dict(zip(a.seeds, pool.map(go, [commands(work, s, None)[0] for s in a.seeds])))
        jobs = [(s, j) for s in a.seeds for j in commands(work, s, [f["kept"] for f in grads[s]["family"]])]
        ones = list(pool.map(go, [j for _, j in jobs]))
    rows, areas = [], {"gradual family": [], "one-shot runs": []}
    for s in a.seeds:
        fam = [(f["kept"], f["metrics"]["arith"]["accuracy"]) for f in grads[s]["family"]]
        one = [(o["non_embedding_params_kept"], o["final"]["metrics"]["arith"]["accuracy"])
               for (seed, _), o in zip(jobs, ones) if seed == s]
        areas["gradual family"].append(area(fam))
        areas["one-shot runs"].append(area(one))
        for keep, (gk, ga), (ok, oa) in zip(KEEPS, fam, one):
            rows.append({"seed": s, "size": keep, "gradual_kept": gk, "gradual": ga, "oneshot_kept": ok, "oneshot": oa})
    result = {"rows": rows, "areas": areas, "total_steps": TOTAL_STEPS, "cpu": cpu_name(),
              "versions": versions("python", "torch", "transformers"),
              "command": ".venv/bin/python bench/frontier.py " + " ".join(argv or [])}
    res = Path(a.results)
    (res / "frontier.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# The size frontier at equal total compute: one gradual run's family vs three one-shot runs", "",
             f"Demo recipe (reference model, sft); {TOTAL_STEPS} recovery steps in all on each side; arith accuracy on 500 "
             "held-out problems. Command: `.venv/bin/python bench/frontier.py --seeds "
             + " ".join(map(str, a.seeds)) + "`.", "",
             "| size asked | gradual kept | gradual accuracy | one-shot kept | one-shot accuracy (80 steps each) |",
             "|---|---|---|---|---|"]
    def m(r, k):
        sd = statistics.stdev(x[k] for x in r) if len(r) > 1 else 0.0
        return f"{statistics.mean(x[k] for x in r):.3f} ± {sd:.3f}"

    for keep in KEEPS:
        r = [x for x in rows if x["size"] == keep]
        lines.append(f"| {keep} | {statistics.mean(x['gradual_kept'] for x in r):.3f} | {m(r, 'gradual')} | "
                     f"{statistics.mean(x['oneshot_kept'] for x in r):.3f} | {m(r, 'oneshot')} |")
    lines += ["", "Area under the frontier (accuracy x fraction kept, between the largest and smallest size): "
              + "; ".join(f"{k} {statistics.mean(v):.4f}" for k, v in areas.items()), ""]
    (res / "frontier.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
