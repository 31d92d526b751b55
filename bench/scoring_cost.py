"""Scoring cost: time of every importance scorer as a ratio to a plain forward pass over the same tokens.

Each scorer runs in its own subprocess (so its peak memory is its own), which builds a random Llama,
measures the scorer's first run for peak memory, then alternates plain forwards and scorer runs and
takes the median ratio: the plain forward is measured in the same process and at the same time,
so load from other jobs on a shared machine affects both sides alike.

    .venv/bin/python bench/scoring_cost.py                  # writes bench/results/scoring_cost.{md,json}
    .venv/bin/python bench/scoring_cost.py --repeats 5 --threads 2 --out /tmp/cost
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

try:
    from bench.common import cpu_name, rss_mib, versions
except ImportError:  # run as `python bench/scoring_cost.py`
    from common import cpu_name, rss_mib, versions

SCORERS = [
    ("mlp", "activation"),
    ("mlp", "ptl"),
    ("mlp", "magnitude"),
    ("mlp", "random"),
    ("mlp", "taylor"),
    ("kv", "activation"),
    ("kv", "taylor"),
    ("layers", "block_influence"),
    ("layers", "skip_loss"),
]
FORWARD_ONLY = {"activation", "ptl", "block_influence"}


def build(args):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=max(512, args.seq),
        tie_word_embeddings=False,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, args.dtype)).eval()
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(args.batches):
        ids = torch.randint(3, args.vocab, (args.batch_size, args.seq), generator=g)
        lengths = torch.randint(args.seq * 3 // 4, args.seq + 1, (args.batch_size,), generator=g)
        lengths[0] = args.seq  # the longest row sets the width, as a tokenizer would
        mask = (torch.arange(args.seq)[None, :] < lengths[:, None]).long()
        batches.append({"input_ids": ids.masked_fill(mask == 0, 0), "attention_mask": mask})
    return model, batches


def worker(args) -> dict:
    """Time one scorer against plain forwards in this process; print a JSON line."""
    import torch

    from prunetune.pruning.importance import score_kv_groups, score_layers, score_mlp

    torch.set_num_threads(args.threads)
    model, batches = build(args)
    kind, method = args.worker.split(":")
    tokens = int(sum(int(b["attention_mask"].sum()) for b in batches))

    def plain_forward():
        with torch.no_grad():
            for b in batches:
                model(**b, use_cache=False)

    def decoder_forward():
        with torch.no_grad():
            for b in batches:
                model.get_decoder()(**b, use_cache=False)

    def score():
        if kind == "mlp":
            extra = {"general_batches": batches} if method == "ptl" else {}
            return score_mlp(model, method, batches, progress=False, **extra)
        if kind == "kv":
            return score_kv_groups(model, method, batches, progress=False)
        return score_layers(model, method, batches, progress=False)

    run = plain_forward if kind == "forward" else score
    base = rss_mib()
    run()  # first run: peak memory (and warm-up)
    peak_extra = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    fwd_times, dec_times, times = [], [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        plain_forward()
        fwd_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        decoder_forward()
        dec_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    # ptl reads the reasoning batches and (here) the same number of general-text batches: twice the tokens
    passes_of_tokens = 2 if method == "ptl" else 1
    ratios = [s / (f * passes_of_tokens) for s, f in zip(times, fwd_times, strict=True)]
    dec_ratios = [s / (f * passes_of_tokens) for s, f in zip(times, dec_times, strict=True)]
    return {
        "scorer": args.worker,
        "seconds": statistics.median(times),
        "forward_seconds": statistics.median(fwd_times),
        "token_passes": passes_of_tokens,
        "ratio": statistics.median(ratios),
        "decoder_seconds": statistics.median(dec_times),
        "ratio_to_decoder": statistics.median(dec_ratios),
        "peak_extra_mib": round(peak_extra, 1),
        "tokens": tokens * passes_of_tokens,
    }


def machine() -> dict:
    return {
        **versions("python", "torch", "transformers"),
        "cpu": cpu_name() or platform.processor() or "unknown",
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def render(results: list[dict], args, info: dict, command: str) -> str:
    lines = [
        "# Scoring cost",
        "",
        f"Random Llama: hidden {args.hidden}, intermediate {args.intermediate}, {args.layers} layers, "
        f"{args.heads} heads / {args.kv_heads} KV heads, vocab {args.vocab}, {args.dtype}; "
        f"{args.batches} batches of {args.batch_size} x up to {args.seq} tokens (rows of 3/4 to full length, "
        f"right-padded); {args.threads} thread(s); median of {args.repeats} runs.",
        "",
        "Ratio = scorer time / time of a plain forward pass (`model(**batch)`, logits included, no_grad) "
        "over the same tokens, both timed alternately in the scorer's own process. `ptl` reads the "
        "calibration batches once as reasoning text and once as general text, so its baseline is two "
        "forward passes. The forward-only scorers stop after the last decoder layer (their hooks need no "
        "logits); `vs decoder` compares them with a decoder-only forward, i.e. shows the hooks' own cost. "
        "The `forward:plain` row times a plain forward against itself: its distance from 1.00x is the "
        "noise floor on this shared machine. Peak = extra resident memory of the scorer's first run over the model and "
        "inputs (includes the forward pass's own activations).",
        "",
        "| scorer | seconds | forward s | ratio | vs decoder | target | peak extra MiB |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        method = r["scorer"].split(":")[1]
        if r["scorer"] == "forward:plain":
            target = "-"
        elif method in FORWARD_ONLY:
            target = "<= 1.3x " + ("ok" if r["ratio"] <= 1.3 else "MISSED")
        elif method == "skip_loss":
            target = f"{args.layers + 1} loss passes: {r['ratio'] / (args.layers + 1):.2f}x per pass"
        elif method == "taylor":
            target = "needs backward"
        else:
            target = "weights only"
        lines.append(
            f"| {r['scorer']} | {r['seconds']:.3f} | {r['forward_seconds'] * r['token_passes']:.3f} | "
            f"{r['ratio']:.2f}x | {r['ratio_to_decoder']:.2f}x | {target} | {r['peak_extra_mib']:.0f} |"
        )
    lines += [
        "",
        "Reading: on a loaded, shared 2-core machine single timings vary by tens of percent (compare the "
        "forward column between rows), so ratios within about 0.3 of 1.0x are noise. Every forward-only "
        "scorer costs about one forward pass (the hooks are per-layer tensor ops: a masked matrix-vector "
        "sum, a last-token gather, a head_dim x head_dim Gram product for KV groups); taylor costs a "
        "forward plus backward (~3x) and holds activations for backward; skip_loss is num_layers + 1 "
        "loss passes by construction.",
        "",
        "Command:",
        "",
        f"    {command}",
        "",
        f"Python {info['python']}, torch {info['torch']}, transformers {info['transformers']}; "
        f"CPU {info['cpu']} ({info['cpu_count']} cores visible, load average {info['load_average_at_start']} at start, "
        "shared with other jobs).",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--intermediate", type=int, default=1408)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--batches", type=int, default=2)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--only", default=None, help="comma-separated scorers, e.g. mlp:activation,kv:taylor")
    p.add_argument("--out", default="bench/results/scoring_cost", help="writes OUT.md and OUT.json")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    from prunetune.io import atomic_write_json, atomic_write_text

    info = machine()
    names = ["forward:plain"] + [f"{k}:{m}" for k, m in SCORERS]
    if args.only:
        names = ["forward:plain"] + args.only.split(",")
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
    results = []
    for name in names:
        cmd = [sys.executable, __file__, *passthrough, "--worker", name]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return 1
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(
            f"{name:24s} {r['seconds']:.3f}s  ratio {r['ratio']:.2f}x ({r['ratio_to_decoder']:.2f}x decoder)  peak +{r['peak_extra_mib']:.0f} MiB",
            flush=True,
        )
    command = "HF_HUB_OFFLINE=1 .venv/bin/python bench/scoring_cost.py " + " ".join(passthrough)
    atomic_write_json(
        args.out + ".json",
        {
            "config": vars(args) | {"worker": None},
            "machine": info,
            "results": results,
            "command": command.strip(),
        },
    )
    atomic_write_text(args.out + ".md", render(results, args, info, command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
