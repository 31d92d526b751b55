"""SmolLM2-135M-Instruct at ~50% / ~70% of its non-embedding parameters: which recovery data, then how much (issue 26).

Recoveries (each one-shot or the loop, `recipes/smollm2.yaml` otherwise):
- `distill_arith`: the recipe as shipped: logit distillation from the dense model on built-in arithmetic text;
- `seqkd_distill`: sequence-level distillation: the dense model's greedy solutions to train-side products /
  chain_sum prompts (reasoning-gym seeds from 1,000,003 on, apart from every evaluation seed), generated once
  into one cache shared by every arm, then token-level KD on them (distill, format prompt_completion);
- `seqkd_sft`: the same solutions, plain SFT on them;
- `onpolicy`: on-policy distillation (TRL DistillationTrainer, reverse KL) on the same prompts;
- `corrected_distill`: `distill_arith` from a teacher first fine-tuned 20 cpt steps on the arithmetic text.
`--budget B` multiplies the steps (and the prompts) by B: 1 is today's 120 steps x 2 sequences.

Evaluated on the final model only (the loop's own evaluation of intermediate iterations uses 30
problems): products and chain_sum (100 problems, the run's seed, the recipe's few-shot form),
gsm_symbolic 3-shot accuracy (50 problems), NLL of gsm_symbolic worked solutions, of HumanEval
solutions and of general English text (standard-library docstrings), and greedy decode tokens/s.

    prunetune import-gguf smollm2 --out models/smollm2-135m-instruct
    .venv/bin/python bench/smollm2_budget.py --seeds 0 --recoveries distill_arith seqkd_distill --jobs 2

Each arm runs in its own subprocess and resumes (`prunetune run` picks up after its last accepted
iteration; a finished arm or evaluation is not repeated); results are rewritten as each arm finishes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

try:
    from bench.common import ROOT, cli
    from bench.reproduce import _cpu, _run, _versions
    from bench.smollm2 import RECIPE, code_data, nll_commands, write_notes_page
except ImportError:  # run as `python bench/smollm2_budget.py`
    from common import ROOT, cli
    from reproduce import _cpu, _run, _versions
    from smollm2 import RECIPE, code_data, nll_commands, write_notes_page

from prunetune.io import atomic_write_text

MODEL = "models/smollm2-135m-instruct"
WORK = "runs/bench_smollm2_budget"
PROMPTS = "[products, chain_sum]"
SHAPES = {
    "one_shot": ["one_shot=true"],
    "gradual_geometric": ["recovery.allocation=geometric"],  # with recovery.total_steps (below)
}
TASKS = ("products", "chain_sum", "gsm_symbolic", "nll_gsm", "nll_code", "nll_general")
GSM_LIMIT, ACC_LIMIT, LOOP_LIMIT, GENERAL_LIMIT = 50, 100, 30, 40


def recovery_overrides(name: str, budget: int) -> list[str]:
    """The recipe overrides of one recovery at `budget` x today's steps (30 per iteration x 4)."""
    steps, count = 30 * budget, 240 * budget
    cache = f"{WORK}/teacher_data.jsonl"
    prompts = f"recovery.prompts={{sources: {PROMPTS}, count: {count}}}"
    seq = ["recovery.chunk_size=60", prompts, f"recovery.teacher_data={{max_new_tokens: 48, cache: {cache}}}"]
    scaled = [f"recovery.config.max_steps={steps}"] if budget != 1 else []
    if name == "distill_arith":
        return scaled
    if name == "seqkd_distill":
        return [*seq, "recovery.config.format=prompt_completion", "recovery.config.max_length=320", *scaled]
    if name == "seqkd_sft":
        return [*seq, "recovery.method=sft",
                f"recovery.config={{max_steps: {steps}, learning_rate: 5.0e-5, per_device_train_batch_size: 2, max_length: 320}}"]
    if name == "onpolicy":
        return ["recovery.method=onpolicy", "recovery.chunk_size=60", prompts,
                f"recovery.config={{max_steps: {steps}, learning_rate: 5.0e-5, per_device_train_batch_size: 2, "
                "max_completion_length: 48, temperature: 1.0, beta: 1.0}"]
    if name == "corrected_distill":
        return ["recovery.teacher_correction={records: 256, config: {max_steps: 20, learning_rate: 1.0e-5, "
                "per_device_train_batch_size: 2, max_length: 256}}", *scaled]
    raise SystemExit(f"unknown recovery '{name}'")


RECOVERIES = ("distill_arith", "seqkd_distill", "seqkd_sft", "onpolicy", "corrected_distill")


def run_name(shape: str, recovery: str, budget: int, keep: float) -> str:
    return f"{shape}__{recovery}" + (f"__x{budget}" if budget != 1 else "") + (f"__keep{keep}" if keep != 0.5 else "")


def loop_command(seed: int, shape: str, recovery: str, budget: int, keep: float) -> list[str]:
    out = f"{WORK}/seed_{seed}/{run_name(shape, recovery, budget, keep)}"
    cmd = [*cli(), "run", RECIPE, f"model={MODEL}", f"output_dir={out}", f"seed={seed}", *SHAPES[shape]]
    if shape != "one_shot":
        cmd.append(f"recovery.total_steps={120 * budget}")
    if keep != 0.5:
        cmd.append(f"target.keep={keep}")
    return [*cmd, f"evaluation.limit={LOOP_LIMIT}", *recovery_overrides(recovery, budget), "--no-progress"]


def eval_commands(model: str, out: Path, seed: int) -> list[list[str]]:
    """Every evaluation of one final (or the dense) model, each to its own file under `out`."""
    import yaml

    rec = yaml.safe_load((ROOT / RECIPE).read_text())
    ev = rec["evaluation"]
    base = [*cli(), "eval", model, "--no-progress", "--seed", str(seed)]
    cmds = []
    for task in ("products", "chain_sum"):
        opts = [f"--task-option={k}={v}" for k, v in ev["task_options"][task].items()]
        cmds.append([*base, "--tasks", task, "--limit", str(ACC_LIMIT), "--max-new-tokens", str(ev["max_new_tokens"]),
                     "--batch-size", str(ev["batch_size"]), *opts, "--out", str(out / f"{task}.json")])
    cmds.append([*base, "--tasks", "gsm_symbolic", "--limit", str(GSM_LIMIT), "--num-fewshot", "3",
                 "--task-option=chat=false", "--max-new-tokens", "192", "--batch-size", "25",
                 "--out", str(out / "gsm_symbolic.json")])
    cmds += nll_commands(Path(model), out)
    general = general_data(ROOT / WORK)
    cmds.append([*cli(), "eval", model, "--tasks", "perplexity", "--limit", str(GENERAL_LIMIT), "--no-progress",
                 "--data", str(general), "--out", str(out / "nll_general.json")])
    cmds.append([sys.executable, str(Path(__file__).resolve()), "--decode", model, "--decode-out", str(out / "decode.json")])
    return cmds


def general_data(work: Path) -> Path:
    """General English text for the forgetting check: standard-library docstrings (bench/smollm2_scorers.py's)."""
    path = work / "general_nll.jsonl"
    if not path.is_file():
        try:
            from bench.smollm2_scorers import general_texts
        except ImportError:
            from smollm2_scorers import general_texts
        work.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, "".join(json.dumps({"text": t}) + "\n" for t in general_texts(GENERAL_LIMIT)))
    return path


def decode_speed(model_dir: str, out: str, new_tokens: int = 64) -> None:
    """Greedy decode tokens/s, batch 1, one thread, best of 3 (the machine is shared: the best is the least disturbed)."""
    import torch

    from prunetune.checkpoint import load_model

    torch.set_num_threads(1)
    model, tok = load_model(model_dir)
    enc = tok("Question: What is 7 times 8?\nAnswer:", return_tensors="pt")
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        with torch.inference_mode():
            ids = model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=tok.eos_token_id)
        n = ids.shape[1] - enc["input_ids"].shape[1]
        best = max(best, n / (time.perf_counter() - t0))
    atomic_write_text(Path(out), json.dumps({"decode_tokens_per_s": best, "new_tokens": new_tokens}) + "\n")


def _metric(path: Path, key: str):
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data[0]["metrics"].get(key) if isinstance(data, list) else data.get(key)


def measured(ev: Path) -> dict:
    out = {t: _metric(ev / f"{t}.json", "accuracy") for t in ("products", "chain_sum", "gsm_symbolic")}
    out |= {t: _metric(ev / f"{t}.json", "nll") for t in ("nll_gsm", "nll_code", "nll_general")}
    out["decode_tokens_per_s"] = _metric(ev / "decode.json", "decode_tokens_per_s")
    return out


def row(seed: int, shape: str, recovery: str, budget: int, keep: float) -> dict | None:
    name = run_name(shape, recovery, budget, keep)
    run_dir, ev = ROOT / WORK / f"seed_{seed}" / name, ROOT / WORK / f"seed_{seed}" / "eval" / name
    summary = run_dir / "summary.json"
    if not summary.is_file() or not (ev / "decode.json").is_file():
        return None
    s = json.loads(summary.read_text())
    events = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    walls = [e["wall_time"] for e in events if e.get("event") == "eval" and "wall_time" in e]
    kept = s["final"]["non_embedding_params"] / s["baseline"]["non_embedding_params"]
    return {"seed": seed, "arm": shape, "recovery": recovery, "budget": budget, "target_keep": keep,
            "tokens": s["tokens"], "recovery_steps": s["recovery_steps"], "non_embedding_params_kept": kept,
            "wall_s": max(walls) if walls else s.get("wall_time"), **measured(ev)}  # a resumed run: its last sitting


def _mean(xs: list) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    if len(xs) == 1:
        return f"{xs[0]:.3f}"
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f} (n={len(xs)})"


def write(runs: list[dict], dense: dict, meta: dict, out_dir: Path) -> None:
    atomic_write_text(out_dir / "smollm2_budget.json", json.dumps({"dense": dense, "runs": runs, "meta": meta}, indent=1))
    keys = [*TASKS, "decode_tokens_per_s"]
    lines = ["# smollm2_budget: SmolLM2-135M-Instruct at half size, which recovery data and how much", "",
             f"Recipe `{RECIPE}`; final models evaluated on what recovery never saw; mean ± sample std over seeds. "
             + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + f"; {meta['cpu']}.", "",
             "| model | non-emb kept | tokens | " + " | ".join(keys) + " |", "|---|---|---|" + "---|" * len(keys)]
    lines.append("| dense | 1.000 | 0 | " + " | ".join(_mean([d.get(k) for d in dense.get("by_seed", [])]) for k in keys) + " |")
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["arm"], r["recovery"], r["budget"], r["target_keep"]), []).append(r)
    for (arm, recovery, budget, _), rs in groups.items():
        label = f"{arm}, {recovery}" + (f", x{budget}" if budget != 1 else "")
        lines.append(f"| {label} | {_mean([r['non_embedding_params_kept'] for r in rs])} | {rs[0]['tokens']} | "
                     + " | ".join(_mean([r[k] for r in rs]) for k in keys) + " |")
    lines += ["", "Per run:", "", "| seed | arm | recovery | budget | wall s | " + " | ".join(keys) + " |",
              "|---|---|---|---|---|" + "---|" * len(keys)]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for r in runs:
        lines.append(f"| {r['seed']} | {r['arm']} | {r['recovery']} | x{r['budget']} | {fmt(r['wall_s'])[:-4]} | "
                     + " | ".join(fmt(r[k]) for k in keys) + " |")
    write_notes_page(out_dir, "smollm2_budget", lines, meta["commands"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--shapes", nargs="+", default=["one_shot"], choices=list(SHAPES))
    p.add_argument("--recoveries", nargs="+", default=["distill_arith", "seqkd_distill"], choices=RECOVERIES)
    p.add_argument("--budgets", type=int, nargs="+", default=[1], help="multiples of today's 120 steps")
    p.add_argument("--keeps", type=float, nargs="+", default=[0.5], help="target.keep (non-embedding share)")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--results", default=str(ROOT / "bench" / "results"))
    p.add_argument("--write-only", action="store_true", help="only aggregate what has finished")
    p.add_argument("--decode", help=argparse.SUPPRESS)
    p.add_argument("--decode-out", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.decode:
        decode_speed(a.decode, a.decode_out)
        return 0
    if not (ROOT / MODEL / "config.json").is_file():
        p.error(f"no checkpoint at {MODEL}; run `prunetune import-gguf smollm2 --out {MODEL}` first")
    os.environ.setdefault("PYTHONPATH", str(ROOT / "src"))  # the arms import this checkout's prunetune
    work = ROOT / WORK
    arms = [(s, sh, rc, b, k) for s in a.seeds for k in a.keeps for b in a.budgets for sh in a.shapes
            for rc in a.recoveries]
    jobs = []
    for s in a.seeds:  # the dense model on each seed's problems first (what the arms are compared against)
        ev = work / f"seed_{s}" / "eval" / "dense"
        code_data(work / f"seed_{s}")
        jobs.append((eval_commands(MODEL, ev, s), work / f"seed_{s}_dense.log", ev / "decode.json"))
    for s, sh, rc, b, k in arms:
        name = run_name(sh, rc, b, k)
        out, ev = f"{WORK}/seed_{s}/{name}", work / f"seed_{s}" / "eval" / name
        jobs.append(([loop_command(s, sh, rc, b, k), *eval_commands(f"{out}/final", ev, s)],
                     work / f"seed_{s}_{name}.log", ev / "decode.json"))
    rel = lambda c: shlex.join(c).replace(str(ROOT) + "/", "").replace(sys.executable, ".venv/bin/python")  # noqa: E731
    meta = {"commands": [".venv/bin/python bench/smollm2_budget.py " + shlex.join(argv if argv is not None else sys.argv[1:])]
            + [rel(c) for j in jobs for c in j[0]], "versions": _versions(), "cpu": _cpu()}
    lock = threading.Lock()

    def refresh() -> None:
        with lock:
            dense = {"by_seed": [{"seed": s, **measured(work / f"seed_{s}" / "eval" / "dense")} for s in a.seeds]}
            dense |= {k: v for k, v in dense["by_seed"][0].items() if k != "seed"}
            write([r for arm in arms if (r := row(*arm)) is not None], dense, meta, Path(a.results))

    def one(job) -> None:
        _run(*job)
        refresh()  # results written as each arm finishes

    if not a.write_only:
        work.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=a.jobs) as pool:
            list(pool.map(one, jobs))
    refresh()
    print(f"wrote {a.results}/smollm2_budget.md and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
