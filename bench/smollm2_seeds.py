"""SmolLM2-135M-Instruct to ~60%: the loop's best schedule vs one-shot over seeds (issue 17).

Arms (same recipe, `recipes/smollm2.yaml`: distillation from the dense model, 120 steps in all):
- `one_shot`: the whole cut at once, then all 120 steps;
- `gradual_4_split`: the reference grids' best schedule: the 2 layers first, MLP neurons in iterations
  2-4, the 120 steps split 5/10/25/80 (`recovery.allocation: split`).
The seed changes the recovery records, the calibration draw and the evaluation problems (the dense
model is evaluated on each seed's problems by the loop itself). Held-out NLLs (HumanEval solutions,
gsm_symbolic worked solutions) as in `bench/smollm2.py`. Seed 0's one-shot row is `smollm2.json`'s
(same settings, run earlier; its run folder is gone) and its split run is `runs/bench_smollm2/gradual_4_split`.

    OMP_NUM_THREADS=1 .venv/bin/python bench/smollm2_seeds.py --seeds 1 2 --jobs 2

Each arm runs in its own subprocess and resumes: a finished arm is not repeated.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

try:
    from bench.common import ROOT, cli
    from bench.reproduce import _cpu, _run, _versions
    from bench.smollm2 import RECIPE, code_data, nll_commands, write_notes_page
except ImportError:  # run as `python bench/smollm2_seeds.py`
    from common import ROOT, cli
    from reproduce import _cpu, _run, _versions
    from smollm2 import RECIPE, code_data, nll_commands, write_notes_page

from prunetune.io import atomic_write_text

ARMS = {
    "one_shot": ["one_shot=true"],
    "gradual_4_split": ["schedule.layers={1: 2}", "schedule.mlp_iterations=[2, 3, 4]", "recovery.total_steps=120",
                        "recovery.allocation=split", "recovery.split=[5, 10, 25, 80]"],
}
TASKS = ("products", "chain_sum")


def run_dir(work: Path, seed: int, arm: str) -> Path:
    return work / "gradual_4_split" if (seed, arm) == (0, "gradual_4_split") else work / f"seed_{seed}" / arm


def eval_dir(work: Path, seed: int, arm: str) -> Path:
    return work / "eval" / arm if seed == 0 else work / f"seed_{seed}" / "eval" / arm


def arm_commands(model: Path, work: Path, seed: int, arm: str) -> list[list[str]]:
    out = run_dir(work, seed, arm)
    loop = [*cli(), "run", RECIPE, f"model={model}", f"output_dir={out}", f"seed={seed}", *ARMS[arm], "--no-progress"]
    return [loop, *nll_commands(out / "final", eval_dir(work, seed, arm))]


def row(work: Path, seed: int, arm: str) -> dict | None:
    """One finished arm: accuracies from the loop's own last evaluation, NLLs, the dense accuracies."""
    if (seed, arm) == (0, "one_shot"):  # smollm2.json's one-shot row, same settings
        old = json.loads((ROOT / "bench" / "results" / "smollm2.json").read_text())
        r = next(x for x in old["rows"] if x["model"] == "one_shot")
        dense = next(x for x in old["rows"] if x["model"] == "dense")
        return {"seed": 0, "arm": arm, **{t: r[t] for t in TASKS}, "nll_code": r["nll_code"],
                "nll_gsm": r["nll_gsm"], "kept": r["kept"], **{f"dense_{t}": dense[t] for t in TASKS}}
    summary, ev = run_dir(work, seed, arm) / "summary.json", eval_dir(work, seed, arm)
    if not summary.is_file() or not (ev / "nll_gsm.json").is_file():
        return None
    s = json.loads(summary.read_text())
    nll = {t: json.loads((ev / f"nll_{t}.json").read_text())[0]["metrics"]["nll"] for t in ("code", "gsm")}
    return {"seed": seed, "arm": arm, **{t: s["final"]["metrics"][t]["accuracy"] for t in TASKS},
            "nll_code": nll["code"], "nll_gsm": nll["gsm"], "kept": s["final"]["params"] / s["baseline"]["params"],
            **{f"dense_{t}": s["baseline"]["metrics"][t]["accuracy"] for t in TASKS}}


def _mean(rows: list[dict], key: str) -> str:
    xs = [r[key] for r in rows]
    if len(xs) < 2:
        return f"{xs[0]:.3f} (n=1)" if xs else "-"
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f} (n={len(xs)}, {min(xs):.2f}-{max(xs):.2f})"


def write(rows: list[dict], meta: dict, out_dir: Path) -> None:
    atomic_write_text(out_dir / "smollm2_seeds.json", json.dumps({"rows": rows, "meta": meta}, indent=1))
    keys = [*TASKS, "nll_code", "nll_gsm"]
    lines = ["# smollm2_seeds: SmolLM2-135M-Instruct to ~60%, the loop's best schedule vs one-shot over seeds", "",
             f"Recipe `{RECIPE}`; mean ± sample std over seeds (n, min-max). "
             + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + f"; {meta['cpu']}.", "",
             "| model | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    dense = [r for r in rows if r["arm"] == "one_shot"]
    lines.append("| dense (each seed's problems) | " + " | ".join(
        [_mean([{k: r[f"dense_{k}"]} for r in dense], k) for k in TASKS] + ["1.329", "1.427"]) + " |")
    for arm in ARMS:
        rs = [r for r in rows if r["arm"] == arm]
        lines.append(f"| {arm} | " + " | ".join(_mean(rs, k) for k in keys) + " |")
    lines += ["", "Per seed:", "", "| seed | arm | " + " | ".join(keys) + " | dense products | dense chain_sum |",
              "|---|---|" + "---|" * (len(keys) + 2)]
    for r in sorted(rows, key=lambda r: (r["seed"], r["arm"])):
        lines.append(f"| {r['seed']} | {r['arm']} | " + " | ".join(f"{r[k]:.3f}" for k in keys)
                     + f" | {r['dense_products']:.2f} | {r['dense_chain_sum']:.2f} |")
    write_notes_page(out_dir, "smollm2_seeds", lines, meta["commands"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="models/smollm2-135m-instruct", help="imported SmolLM2 checkpoint")
    p.add_argument("--work", default="runs/bench_smollm2")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="seeds to run (seed 0 is read as it is)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--results", default=str(ROOT / "bench" / "results"))
    p.add_argument("--write-only", action="store_true", help="only aggregate finished arms")
    a = p.parse_args(argv)
    model, work = (ROOT / a.model).resolve(), (ROOT / a.work).resolve()
    if not (model / "config.json").is_file():
        p.error(f"--model: no checkpoint at {model}; run `prunetune import-gguf smollm2 --out {a.model}` first")
    code_data(work)
    jobs = [(arm_commands(model, work, s, arm), work / f"seed_{s}_{arm}.log", eval_dir(work, s, arm) / "nll_gsm.json")
            for s in a.seeds for arm in ARMS]
    if not a.write_only:
        with ThreadPoolExecutor(max_workers=a.jobs) as pool:
            list(pool.map(lambda j: _run(*j), jobs))
    rows = [r for s in sorted({0, *a.seeds}) for arm in ARMS if (r := row(work, s, arm)) is not None]
    rel = lambda c: shlex.join(c).replace(str(ROOT) + "/", "")  # noqa: E731
    meta = {"commands": [".venv/bin/python bench/smollm2_seeds.py --seeds " + " ".join(map(str, a.seeds))]
            + [rel(c) for j in jobs for c in j[0]], "versions": _versions(), "cpu": _cpu()}
    write(rows, meta, Path(a.results))
    print(f"wrote {a.results}/smollm2_seeds.md and .json ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
