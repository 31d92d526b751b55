"""Generation throughput of prunetune's evaluator vs plain batched `model.generate`, same run, same settings.

Both sides get the same prompts (reasoning-gym gsm_symbolic questions in the Question/Answer format),
the same greedy settings, batch size and token budget, on a random Llama large enough (hidden 384,
6 layers) that the model, not Python overhead, dominates. The baseline is the loop people write by
hand: left-pad each batch in input order, call generate, batch_decode. The evaluator path is
`prunetune.tasks.generation.generate` (length-sorted batches, stop strings, per-completion accounting).
Ratio = baseline seconds / evaluator seconds (>1 means the evaluator is faster); target >= 0.9.
Peak memory: each side generates once (with stop strings) in a fresh subprocess; the peak resident
memory of that pass (VmHWM, reset just before it) minus the resident memory before it.

    .venv/bin/python bench/eval_throughput.py [--prompts 32] [--batch-size 8] [--max-new-tokens 64]
    .venv/bin/python bench/eval_throughput.py --memory-only   # add peak memory to the last results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

try:
    from bench.common import cpu_name, peak_rss_mib, reset_peak_rss, rss_mib, versions
except ImportError:  # run as `python bench/eval_throughput.py`
    from common import cpu_name, peak_rss_mib, reset_peak_rss, rss_mib, versions

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_model(seed: int = 0):
    import torch
    from transformers import AutoModelForCausalLM

    from prunetune.builtin.tiny import tiny_config
    from prunetune.builtin.tokenizer import tiny_tokenizer

    tok = tiny_tokenizer()
    cfg = tiny_config(
        "llama",
        vocab_size=len(tok),
        hidden_size=384,
        intermediate_size=1024,
        num_hidden_layers=6,
        num_attention_heads=6,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=2048,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    model.eval()
    return model, tok


def baseline(model, tok, prompts, *, batch_size, max_new_tokens, stop):
    import torch

    tok.padding_side = "left"
    texts = []
    with torch.inference_mode():
        for i in range(0, len(prompts), batch_size):
            enc = tok(prompts[i : i + batch_size], return_tensors="pt", padding=True)
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
                stop_strings=stop,
                tokenizer=tok,
            )
            texts += tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return texts


def peak_extra_mib(side: str, args) -> float:
    """One pass of `side` in this process: peak resident MiB during it minus resident MiB before it."""
    from prunetune.tasks import get_task
    from prunetune.tasks.generation import generate
    from prunetune.tasks.task import QA_STOP

    model, tok = build_model()
    task = get_task("gsm_symbolic")
    prompts = [task.build_prompt(e, tok) for e in task.examples(limit=args.prompts)]
    kw = dict(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, stop=list(QA_STOP))
    reset_peak_rss()  # the high-water mark (VmHWM) back to the current RSS
    before = rss_mib()
    (baseline if side == "baseline" else generate)(model, tok, prompts, **kw)
    return peak_rss_mib() - before


def measure_memory(args) -> dict:
    out = {}
    for side in ("baseline", "evaluator"):  # each in a fresh process, so neither inherits the other's peak
        cmd = [sys.executable, __file__, "--peak-side", side, "--prompts", str(args.prompts)]
        cmd += ["--batch-size", str(args.batch_size), "--max-new-tokens", str(args.max_new_tokens)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[side] = round(float(res.stdout.strip().splitlines()[-1]), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "eval_throughput"))
    ap.add_argument("--memory-only", action="store_true", help="measure peak memory, keep the last timings")
    ap.add_argument("--peak-side", choices=["baseline", "evaluator"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peak_side:
        print(peak_extra_mib(args.peak_side, args))
        return
    out = Path(args.out)
    if args.memory_only:
        result = json.loads(out.with_suffix(".json").read_text())
        for k in ("prompts", "batch_size", "max_new_tokens"):
            setattr(args, k, result["settings"][k])
        result["peak_extra_mib"] = measure_memory(args)
        result["memory_command"] = ".venv/bin/python bench/eval_throughput.py --memory-only"
        return write(result, out)

    import torch

    from prunetune.tasks import get_task
    from prunetune.tasks.generation import generate
    from prunetune.tasks.task import QA_STOP

    model, tok = build_model()
    task = get_task("gsm_symbolic")
    prompts = [task.build_prompt(e, tok) for e in task.examples(limit=args.prompts)]
    kw = dict(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    rows = []
    for label, stop in (("no stop strings", None), ("with stop strings", list(QA_STOP))):
        base_t, eval_t, tokens = [], [], 0
        for _ in range(args.repeats):  # alternate so machine load hits both sides alike
            t = time.perf_counter()
            baseline(model, tok, prompts, stop=stop, **kw)
            base_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            gens = generate(model, tok, prompts, stop=stop, **kw)
            eval_t.append(time.perf_counter() - t)
            tokens = sum(g.num_tokens for g in gens)
        b, e = min(base_t), min(eval_t)
        rows.append(
            {
                "setting": label,
                "baseline_s": round(b, 3),
                "evaluator_s": round(e, 3),
                "evaluator_tokens": tokens,
                "evaluator_tok_per_s": round(tokens / e, 1),
                "ratio": round(b / e, 3),
            }
        )
        print(rows[-1], flush=True)
    env = {
        **versions("torch", "transformers", "python"),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cpu_model": cpu_name() or "unknown",
    }
    cmd = (
        f".venv/bin/python bench/eval_throughput.py --prompts {args.prompts} --batch-size {args.batch_size} "
        f"--max-new-tokens {args.max_new_tokens} --repeats {args.repeats}"
    )
    result = {
        "command": cmd,
        "settings": {k: v for k, v in vars(args).items() if k not in ("memory_only", "peak_side")},
        "env": env,
        "rows": rows,
        "model": "random Llama hidden 384, 6 layers, MLP 1024, 6 heads / 2 KV heads, fp32",
        "peak_extra_mib": measure_memory(args),
        "memory_command": cmd,
    }
    write(result, out)


def write(result: dict, out: Path) -> None:
    from prunetune.io import atomic_write_text

    cmd, env, rows, args = result["command"], result["env"], result["rows"], result["settings"]
    atomic_write_text(out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    mem = result.get("peak_extra_mib")
    lines = [
        "# Evaluator generation throughput vs plain batched model.generate",
        "",
        f"Command: `{cmd}`",
        "",
        f"Model: {result['model']}; prompts: {args['prompts']} gsm_symbolic questions; "
        f"greedy, batch {args['batch_size']}, {args['max_new_tokens']} new tokens; best of {args['repeats']}.",
        "",
        "| setting | baseline s | evaluator s | evaluator tok/s | ratio (baseline/evaluator) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['setting']} | {r['baseline_s']} | {r['evaluator_s']} | {r['evaluator_tok_per_s']} | "
        f"{r['ratio']} |"
        for r in rows
    ]
    lines += [
        "",
        "Target: ratio >= 0.9. " + ("Met." if min(r["ratio"] for r in rows) >= 0.9 else "NOT met."),
        "",
        "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()),
    ]
    if mem:
        lines += [
            "",
            f"Peak memory of one pass with stop strings, each side in a fresh process (extra resident MiB over "
            f"the loaded model and prompts; `{result['memory_command']}`): baseline {mem['baseline']}, "
            f"evaluator {mem['evaluator']} ({mem['evaluator'] / max(mem['baseline'], 1e-9):.2f}x).",
        ]
    notes = out.with_name(out.name + ".notes.md")
    if notes.is_file():
        lines += ["", notes.read_text().rstrip()]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
