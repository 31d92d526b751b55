"""Training-step time of the reference build on this machine: batches as shipped vs length-bucketed.

Times the same build loop body as `prunetune reference build` (forward, backward, clip, AdamW) on the
same generated problems, batched as the build batches them without and with `--length-buckets`, the
two sides alternating in one run so machine noise hits both. Also reports the share of padding tokens.

    OMP_NUM_THREADS=2 .venv/bin/python bench/reference_step.py --steps 30 --buckets 16
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

try:
    from bench.common import ROOT, versions
except ImportError:  # run as `python bench/reference_step.py`
    from common import ROOT, versions

from prunetune.builtin import arith, reference


def padding_share(encoded, batch_size: int) -> float:
    real = sum(len(ids) for ids, _ in encoded)
    padded = sum(
        max(len(ids) for ids, _ in encoded[i : i + batch_size]) * len(encoded[i : i + batch_size])
        for i in range(0, len(encoded), batch_size)
    )
    return 1 - real / padded


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30, help="timed steps per side (after 3 warm-up steps)")
    ap.add_argument("--batch-size", type=int, default=48)
    ap.add_argument("--buckets", type=int, default=16)
    ap.add_argument("--out", default=str(ROOT / "bench/results/reference_step"))
    args = ap.parse_args(argv)
    tok = reference.build_tokenizer(0)
    n = (args.steps + 3) * args.batch_size
    plain = reference._encode(
        tok, arith.generate_problems(n, split="train", seed=0, **reference.DATA_OPTIONS)
    )
    sides = {
        "as shipped": plain,
        f"--length-buckets {args.buckets}": reference.length_bucketed(
            plain, args.batch_size, args.buckets, seed=0
        ),
    }
    models = {k: reference.new_model(tok, 0) for k in sides}
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-3) for k, m in models.items()}
    spent = dict.fromkeys(sides, 0.0)
    for step in range(args.steps + 3):  # sides alternate step by step
        for k, enc in sides.items():
            batch = reference._batch(
                enc[step * args.batch_size : (step + 1) * args.batch_size], tok.pad_token_id
            )
            t = time.perf_counter()
            loss = models[k](**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(models[k].parameters(), 1.0)
            opts[k].step()
            opts[k].zero_grad(set_to_none=True)
            if step >= 3:
                spent[k] += time.perf_counter() - t
    rows = [
        {
            "batching": k,
            "s_per_step": spent[k] / args.steps,
            "padding_share": padding_share(enc, args.batch_size),
        }
        for k, enc in sides.items()
    ]
    cmd = f"OMP_NUM_THREADS={torch.get_num_threads()} python bench/reference_step.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    out = Path(args.out)
    from prunetune.io import atomic_write_json, atomic_write_text

    atomic_write_json(
        out.with_suffix(".json"), {"command": cmd, "threads": torch.get_num_threads(), "rows": rows}
    )
    v = versions("torch")
    lines = [
        "# reference build: seconds per training step",
        "",
        f"Command: `{cmd}`",
        "",
        f"torch {v['torch']}, {torch.get_num_threads()} threads, {args.batch_size} problems per step, "
        f"{args.steps} timed steps per side, sides alternating.",
        "",
        "| batching | s / step | padding share of tokens |",
        "|---|---|---|",
        *(f"| {r['batching']} | {r['s_per_step']:.3f} | {r['padding_share']:.1%} |" for r in rows),
        "",
        f"Ratio: {rows[1]['s_per_step'] / rows[0]['s_per_step']:.2f}x the shipped batching's step time.",
    ]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
