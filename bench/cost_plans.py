"""The cost planner's output for the shipped paper-scale recipes, written down (no GPU: plans only).

Runs `prunetune plan RECIPE --gpus N --gpu h200` for both paper recipes and the 70B-shaped example at
8 / 16 / 32 GPUs (and ZeRO-2 at 8, which cannot fit), plus the GRPO recipe under other generation
assumptions, and writes every printed plan with its command.

  python bench/cost_plans.py --out bench/results/cost_plans
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
from pathlib import Path

from prunetune.cli import main

COMMANDS = [
    "paper-qwen2.5-7b-grpo --gpus 8 --gpu h200",
    "paper-qwen2.5-7b-grpo --gpus 8 --gpu h200 --gen-fill 0.5",
    "paper-qwen2.5-7b-grpo --gpus 8 --gpu h200 --gen-speedup 4",
    "paper-llama3-8b-cpt --gpus 8 --gpu h200",
    "example-llama3-70b-cpt --gpus 8 --gpu h200",
    "example-llama3-70b-cpt --gpus 16 --gpu h200",
    "example-llama3-70b-cpt --gpus 32 --gpu h200",
    "example-llama3-70b-cpt recovery.config.sharding=zero2 --gpus 8 --gpu h200",
]


def run(command: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = main(["plan", *command.split()])
    return rc, out.getvalue()


def main_(out: Path) -> None:
    md = ["# Cost plans (prunetune plan --gpus N --gpu h200)", "",
          "Estimates, not measurements: see cost_plans.notes.md for what they include and exclude.", ""]
    rows = []
    for command in COMMANDS:
        rc, text = run(command)
        total = re.search(r"total: ([\d,.]+) GPU-h = ([\d,.]+) h on (\d+) GPUs", text)
        peak = re.search(r"peak ([\d.]+) GB", text)
        rows.append({"command": f"prunetune plan {command}", "exit": rc, "gpu_hours": float(total[1].replace(",", "")),
                     "hours": float(total[2].replace(",", "")), "gpus": int(total[3]),
                     "peak_gb_per_gpu": float(peak[1]) if peak else None, "fits": "NO!" not in text})
        md += [f"## `prunetune plan {command}`", "", "```", text.rstrip(), "```", ""]
    md[4:4] = ["| command | GPU-h | hours | peak GB/GPU | fits |", "|---|---|---|---|---|"] + [
        f"| `{r['command']}` | {r['gpu_hours']:,.1f} | {r['hours']:,.1f} | {r['peak_gb_per_gpu']} | {'yes' if r['fits'] else 'NO'} |"
        for r in rows] + [""]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/cost_plans"))
    main_(ap.parse_args().out)
