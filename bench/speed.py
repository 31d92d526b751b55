"""What compaction buys: decode / prefill / training throughput of pruned models vs dense, in one run.

Speed does not depend on weight values, so models are randomly initialised with published shapes
(SmolLM2-135M, Qwen2.5-1.5B, Llama-3-8B) and pruned with prunetune's own surgery (MLP neurons, uniform,
widths rounded) to 75% and 50% of their non-embedding parameters. Every number is a ratio measured in
the same process (pruned over dense, or prunetune's recovery over a plain PyTorch loop).

  python bench/speed.py --shapes smollm2-135m,qwen2.5-1.5b            # CPU, fp32
  python bench/speed.py --shapes llama-3-8b --device cuda --dtype bfloat16 --train   # a GPU
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

try:
    from bench.common import ROOT, versions
except ImportError:  # run as `python bench/speed.py`
    from common import ROOT, versions

SHAPES = {
    "smollm2-135m": ROOT / "recipes/configs/smollm2-135m.json",
    "qwen2.5-1.5b": {
        "model_type": "qwen2",
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
        "max_position_embeddings": 32768,
    },
    "llama-3-8b": ROOT / "recipes/configs/llama-3-8b.json",
}


def build(shape_name: str, device: str, dtype: torch.dtype):
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = SHAPES[shape_name]
    data = json.loads(Path(spec).read_text()) if isinstance(spec, Path) else dict(spec)
    config = AutoConfig.for_model(data.pop("model_type"), **data)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def prune_to(model, keep: float, round_to: int):
    """Uniform MLP pruning to `keep` of the non-embedding parameters, by prunetune's planner and surgery."""
    from prunetune.loop.planner import _width_for_target
    from prunetune.models.shape import ModelShape
    from prunetune.pruning.plan import PruningPlan
    from prunetune.pruning.surgery import apply_plan

    shape = ModelShape.from_config(model.config)
    width = _width_for_target(shape, shape, keep, round_to)
    n = shape.intermediate_size - width
    apply_plan(model, PruningPlan(mlp_neurons={i: list(range(n)) for i in range(shape.num_hidden_layers)}))
    return ModelShape.from_config(model.config)


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def decode_tps(model, batch: int, new_tokens: int, device: str, reps: int, static: bool = False) -> float:
    """Greedy generate() tokens/s. `static` uses transformers' static KV cache, which generate() compiles
    (CUDA graphs on a GPU), removing most per-token Python overhead."""
    ids = torch.randint(10, 1000, (batch, 16), device=device)
    kw = dict(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=0,
        attention_mask=torch.ones_like(ids),
    )
    if static:
        kw["cache_implementation"] = "static"
        for _ in range(2):
            model.generate(ids, **kw)  # compile + warm-up at the timed shapes
    model.generate(ids, **{**kw, "max_new_tokens": 4, "min_new_tokens": 4})  # warm-up
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        model.generate(ids, **kw)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return batch * new_tokens / best


@torch.no_grad()
def prefill_tps(model, batch: int, length: int, device: str, reps: int) -> float:
    ids = torch.randint(10, 1000, (batch, length), device=device)
    model(ids, use_cache=False)
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        model(ids, use_cache=False, logits_to_keep=1)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return batch * length / best


def plain_train_tps(model, batch: int, length: int, steps: int, device: str) -> float:
    """The baseline: a hand-written AdamW loop on the same model, batch and sequence length."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(10, 1000, (batch, length), device=device)
    times = []
    for _ in range(steps + 2):
        _sync(device)
        t = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        times.append(time.perf_counter() - t)
    del opt
    model.eval()
    times = sorted(times[2:])
    return batch * length / times[len(times) // 2]


def ours_train_tps(model, batch: int, length: int, steps: int, device: str, bf16: bool) -> tuple[float, dict]:
    """prunetune's `cpt` recovery (transformers Trainer underneath) on the same shapes."""
    import tempfile

    from prunetune.builtin.tokenizer import tiny_tokenizer
    from prunetune.recovery import recover

    tok = tiny_tokenizer()
    g = torch.Generator().manual_seed(0)
    words = ["alpha", "beta", "gamma", "12", "+", "=", "answer", "the", "of", "question"]
    texts = [
        " ".join(words[i] for i in torch.randint(0, len(words), (length * 2,), generator=g).tolist())
        for _ in range(batch * (steps + 4))
    ]
    cfg = {
        "max_steps": steps + 2,
        "per_device_train_batch_size": batch,
        "max_length": length,
        "learning_rate": 1e-5,
        "logging_steps": 1,
        "bf16": bf16,
        "warmup_ratio": 0.0,
    }
    with tempfile.TemporaryDirectory() as work:
        res = recover(model, tok, "cpt", [{"text": t} for t in texts], cfg, work_dir=work, progress=False)
    model.eval()
    walls = [m["wall_time"] for m in res.metrics]
    toks = [m["tokens"] for m in res.metrics]
    # steady state: skip the first two steps (allocation, warm-up), as the plain loop does
    rate = (toks[-1] - toks[1]) / (walls[-1] - walls[1])
    return rate, {"steps": res.steps, "tokens": res.tokens_seen}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="smollm2-135m,qwen2.5-1.5b")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--keeps", default="0.75,0.5")
    ap.add_argument("--round-to", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--prefill", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--static", action="store_true", help="decode with a static, compiled KV cache")
    ap.add_argument("--no-prefill", action="store_true")
    ap.add_argument(
        "--train", action="store_true", help="also training tokens/s: prunetune cpt vs a plain loop"
    )
    ap.add_argument("--train-batch", type=int, default=4)
    ap.add_argument("--train-len", type=int, default=512)
    ap.add_argument("--train-steps", type=int, default=8)
    ap.add_argument(
        "--peak-tflops", type=float, default=None, help="device peak for MFU (e.g. 989 for H100/H200 bf16)"
    )
    ap.add_argument("--out", default=str(ROOT / "bench/results/speed"))
    args = ap.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    keeps = [float(k) for k in args.keeps.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    v = versions("torch", "transformers")
    results = {"device": args.device, "dtype": args.dtype, "torch": v["torch"], "shapes": {}}
    if args.device.startswith("cuda"):
        results["gpu"] = torch.cuda.get_device_name(0)
    results["transformers"] = v["transformers"]
    results["cpu"] = platform.processor() or platform.machine()
    results["threads"] = torch.get_num_threads()
    for name in args.shapes.split(","):
        from prunetune.models.shape import ModelShape

        entry = {"models": {}}
        for keep in [1.0] + keeps:
            model = build(name, args.device, dtype)
            shape = (
                ModelShape.from_config(model.config) if keep == 1.0 else prune_to(model, keep, args.round_to)
            )
            m = {
                "intermediate_size": shape.intermediate_size,
                "non_embedding_params": shape.non_embedding_params(),
                "params": shape.params(),
                "flops_per_token": shape.flops_per_token(),
            }
            for b in batches:
                m[f"decode_tps_batch{b}"] = decode_tps(
                    model, b, args.new_tokens, args.device, args.reps, args.static
                )
            m["prefill_tps"] = (
                float("nan")
                if args.no_prefill
                else prefill_tps(
                    model, 1 if args.device == "cpu" else 8, args.prefill, args.device, args.reps
                )
            )
            if args.train and keep in (1.0, min(keeps)):
                m["plain_train_tps"] = plain_train_tps(
                    model, args.train_batch, args.train_len, args.train_steps, args.device
                )
                m["ours_train_tps"], m["ours_train_info"] = ours_train_tps(
                    model,
                    args.train_batch,
                    args.train_len,
                    args.train_steps,
                    args.device,
                    args.dtype == "bfloat16",
                )
                m["ours_over_plain"] = m["ours_train_tps"] / m["plain_train_tps"]
                if args.peak_tflops:
                    train_flops = 6 * shape.non_embedding_params() + 6 * shape.vocab_size * shape.hidden_size
                    m["ours_mfu"] = m["ours_train_tps"] * train_flops / (args.peak_tflops * 1e12)
                    m["plain_mfu"] = m["plain_train_tps"] * train_flops / (args.peak_tflops * 1e12)
            if args.device.startswith("cuda"):
                m["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
                torch.cuda.reset_peak_memory_stats()
            entry["models"][str(keep)] = m
            print(
                name,
                keep,
                json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in m.items()}),
                flush=True,
            )
            del model
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
        dense = entry["models"]["1.0"]
        entry["decode_speedup"] = {
            f"batch{b}": {
                str(k): entry["models"][str(k)][f"decode_tps_batch{b}"] / dense[f"decode_tps_batch{b}"]
                for k in keeps
            }
            for b in batches
        }
        entry["prefill_speedup"] = {
            str(k): entry["models"][str(k)]["prefill_tps"] / dense["prefill_tps"] for k in keeps
        }
        entry["flops_ratio"] = {
            str(k): entry["models"][str(k)]["flops_per_token"] / dense["flops_per_token"] for k in keeps
        }
        results["shapes"][name] = entry
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results["command"] = "python bench/speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    lines = [
        f"# speed ({args.device}, {args.dtype}{', static compiled KV cache' if args.static else ''})",
        "",
        f"Command: `{results['command']}`",
        "",
        f"torch {v['torch']}, transformers {v['transformers']}, {results.get('gpu', results['cpu'])}, "
        f"{results['threads']} threads",
        "",
        "| shape | kept | intermediate | non-emb params | "
        + " | ".join(f"decode b{b} x" for b in batches)
        + " | prefill x | FLOPs ratio |",
        "|---|---|---|---|" + "---|" * len(batches) + "---|---|",
    ]
    for name, e in results["shapes"].items():
        for k in keeps:
            mm = e["models"][str(k)]
            lines.append(
                f"| {name} | {k} | {mm['intermediate_size']} | {mm['non_embedding_params']:,} | "
                + " | ".join(f"{e['decode_speedup'][f'batch{b}'][str(k)]:.2f}" for b in batches)
                + f" | {e['prefill_speedup'][str(k)]:.2f} | {e['flops_ratio'][str(k)]:.2f} |"
            )
    lines += ["", "Absolute tokens/s (dense):", ""]
    for name, e in results["shapes"].items():
        d = e["models"]["1.0"]
        lines.append(
            f"- {name}: "
            + ", ".join(f"decode b{b} {d[f'decode_tps_batch{b}']:.1f}" for b in batches)
            + f", prefill {d['prefill_tps']:.0f}"
        )
        for k, mm in e["models"].items():
            if "ours_over_plain" in mm:
                extra = (
                    f", MFU ours {mm['ours_mfu']:.1%} / plain {mm['plain_mfu']:.1%}"
                    if "ours_mfu" in mm
                    else ""
                )
                lines.append(
                    f"  - training at keep {k}: prunetune cpt {mm['ours_train_tps']:.0f} tok/s vs plain loop "
                    f"{mm['plain_train_tps']:.0f} tok/s = {mm['ours_over_plain']:.2f}x{extra}"
                )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
