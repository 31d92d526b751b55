"""Distillation memory: peak memory and time of one distill loss + backward step, plain vs chunked / top-k KL.

Student and teacher are random Qwen2-shaped models with a 151936-token vocabulary (Qwen2.5's) and a
small body (hidden 128, 2 layers) so the vocabulary logits dominate, as they do per token at scale.
Each variant runs in its own process: build both models and the batch, reset the peak (VmHWM), run
one step (student forward, teacher forward under no_grad, loss, backward), read the peak over the
resident memory just before the step; then time three more steps (median).

- plain: `distill.distill_loss` on full logits (the implementation before distill.chunk_size/top_k);
- chunked: `distill.chunk_size` positions at a time (distill_kl.py);
- chunked + top-k: also `distill.top_k` (teacher renormalised over its top-k);
- chunked, bf16 teacher: `teacher_dtype: bfloat16` on top of chunking.

    .venv/bin/python bench/distill_memory.py                    # writes bench/results/distill_memory.{md,json}
    .venv/bin/python bench/distill_memory.py --seq 256 --out /tmp/dm
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

try:
    from bench.common import (
        ROOT,
        command_footer,
        peak_rss_mib,
        reset_peak_rss,
        rss_mib,
        run_worker,
        torch_machine,
        write_page,
    )
except ImportError:  # run as `python bench/distill_memory.py`
    from common import (
        ROOT,
        command_footer,
        peak_rss_mib,
        reset_peak_rss,
        rss_mib,
        run_worker,
        torch_machine,
        write_page,
    )

VOCAB = 151936
VARIANTS = {
    "plain": {},
    "chunked": {"chunk_size": 128},
    "chunked + top-k 64": {"chunk_size": 128, "top_k": 64},
    "chunked, bf16 teacher": {"chunk_size": 128, "teacher_dtype": "bfloat16"},
}


def build(args, seed: int, dtype):
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(vocab_size=VOCAB, hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True, pad_token_id=0)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=dtype)


def worker(args) -> dict:
    import torch

    from prunetune.models import get_adapter
    from prunetune.recovery.distill import distill_loss
    from prunetune.recovery.distill_kl import chunked_distill_loss

    torch.set_num_threads(args.threads)
    opts = VARIANTS[args.worker]
    student = build(args, 2, torch.float32).train()
    teacher = build(args, 1, getattr(torch, opts.get("teacher_dtype", "float32"))).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, VOCAB, (args.batch_size, args.seq), generator=g)
    feed = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    labels = ids.clone()
    adapter = get_adapter(student)

    def step():
        student.zero_grad(set_to_none=True)
        if not opts:
            logits = student(**feed).logits
            with torch.no_grad():
                t_logits = teacher(**feed).logits
            loss, kl = distill_loss(logits, t_logits, labels, 2.0, 0.0)
        else:
            hidden = student.get_decoder()(**feed)[0]
            with torch.no_grad():
                t_hidden = teacher.get_decoder()(**feed)[0]
            loss, kl = chunked_distill_loss(
                hidden, t_hidden, labels, temperature=2.0, alpha=0.0,
                student_head=lambda h: adapter.output_logits(student, h),
                teacher_head=lambda h: adapter.output_logits(teacher, h),
                chunk_size=opts.get("chunk_size"), top_k=opts.get("top_k"),
            )
        loss.backward()
        return float(loss), float(kl)

    base = rss_mib()
    reset_peak_rss()
    loss, kl = step()
    peak = peak_rss_mib() - base
    times = []
    for _ in range(3):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return {"variant": args.worker, **opts, "peak_mib": round(peak, 1), "step_seconds": round(statistics.median(times), 3),
            "loss": loss, "kl": kl}


def render(res: dict, command: str) -> str:
    a = res["args"]
    plain = res["runs"][0]
    n = a["batch_size"] * a["seq"]
    lines = [
        "# Distillation step memory: plain vs chunked / top-k KL",
        "",
        f"Student and teacher: random Qwen2 shape, vocab {VOCAB}, hidden 128, 2 layers, tied embeddings; one "
        f"batch of {a['batch_size']} x {a['seq']} tokens ({n} positions: one fp32 [positions, vocab] tensor is "
        f"{n * VOCAB * 4 / 2**20:.0f} MiB); temperature 2, alpha 0; {a['threads']} thread(s). Peak = VmHWM during "
        "one loss + backward step over the resident memory before it (models and batch built), each variant in "
        "its own process.",
        "",
        "| variant | peak MiB | vs plain | step s | loss |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in res["runs"]:
        lines.append(f"| {r['variant']} | {r['peak_mib']:.0f} | {r['peak_mib'] / plain['peak_mib']:.2f}x | "
                     f"{r['step_seconds']:.2f} | {r['loss']:.5f} |")
    lines += command_footer(command, res["machine"])
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "distill_memory"))
    p.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    runs = []
    for name in VARIANTS:
        runs.append(run_worker(__file__, name, "--batch-size", str(args.batch_size), "--seq", str(args.seq),
                               "--threads", str(args.threads)))
        print(runs[-1], flush=True)
    res = {"args": {k: v for k, v in vars(args).items() if k not in ("worker", "out")}, "runs": runs,
           "machine": torch_machine()}
    command = "nice .venv/bin/python bench/distill_memory.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_page(args.out, res, render(res, command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
