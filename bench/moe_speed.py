"""What removing routed experts buys: decode / prefill tokens/s and weight bytes at 75% / 50% of experts kept.

Speed does not depend on weight values, so the model is randomly initialised with a published MoE shape
(OLMoE-1B-7B or Qwen3-30B-A3B) cut to a few layers, and experts are removed with prunetune's own
surgery (the same count from every layer). Every speed is a ratio against the dense model measured in
the same process. Beside it, the physical limit: dense / pruned weight bytes a token has to read. At
batch-1 decode a token reads only its top-k experts, whose count expert removal does not change (limit
~1.0: expert pruning saves memory, not per-token work); a long prefill touches every expert (limit =
total-parameter ratio) but does the same FLOPs per token (limit ~1.0 where it is compute-bound).

  nice python bench/moe_speed.py --shape olmoe-1b-7b --layers 1
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

try:
    from bench.common import ROOT, versions
except ImportError:  # run as `python bench/moe_speed.py`
    from common import ROOT, versions

SHAPES = {
    "olmoe-1b-7b": dict(model_type="olmoe", hidden_size=2048, intermediate_size=1024, num_experts=64,
                        num_experts_per_tok=8, num_attention_heads=16, num_key_value_heads=16,
                        vocab_size=50304, tie_word_embeddings=False, max_position_embeddings=4096),
    "qwen3-30b-a3b": dict(model_type="qwen3_moe", hidden_size=2048, moe_intermediate_size=768, num_experts=128,
                          num_experts_per_tok=8, num_attention_heads=32, num_key_value_heads=4, head_dim=128,
                          intermediate_size=6144, norm_topk_prob=True, vocab_size=151936,
                          tie_word_embeddings=False, max_position_embeddings=4096),
}


def build(name: str, layers: int, dtype: torch.dtype, experts_impl: str):
    from transformers import AutoConfig, AutoModelForCausalLM

    data = dict(SHAPES[name], num_hidden_layers=layers)
    config = AutoConfig.for_model(data.pop("model_type"), **data)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=dtype, experts_implementation=experts_impl).eval()


def remove_experts(model, keep: float):
    from prunetune.models.shape import ModelShape
    from prunetune.pruning.plan import PruningPlan
    from prunetune.pruning.surgery import apply_plan

    shape = ModelShape.from_config(model.config)
    n = shape.num_experts - round(keep * shape.num_experts)
    if n:
        g = torch.Generator().manual_seed(1)
        apply_plan(model, PruningPlan(experts={i: sorted(torch.randperm(shape.num_experts, generator=g)[:n].tolist())
                                               for i in shape.moe_layers}))
    return ModelShape.from_config(model.config)


@torch.no_grad()
def decode_tps(model, new_tokens: int, reps: int) -> float:
    ids = torch.randint(10, 500, (1, 16))
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        model.generate(ids, **kw)
        best = min(best, time.perf_counter() - t)
    return new_tokens / best


@torch.no_grad()
def prefill_tps(model, tokens: int, reps: int) -> float:
    ids = torch.randint(10, 500, (1, tokens))
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        model(ids, use_cache=False, logits_to_keep=1)
        best = min(best, time.perf_counter() - t)
    return tokens / best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="olmoe-1b-7b", choices=sorted(SHAPES))
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--keeps", default="1.0,0.75,0.5")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--prefill-tokens", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--experts-impl", default="grouped_mm", choices=["grouped_mm", "batched_mm", "eager"],
                    help="transformers' experts kernel (its default is grouped_mm)")
    ap.add_argument("--out", default=str(ROOT / "bench/results/moe_speed"))
    ap.add_argument("--append", action="store_true", help="add this run's table to the .md / .json instead of replacing")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    models, rows = [], []
    for keep in [float(k) for k in args.keeps.split(",")]:  # all variants held, measured in turns
        model = build(args.shape, args.layers, torch.float32, args.experts_impl)
        assert model.config._experts_implementation == args.experts_impl
        shape = remove_experts(model, keep)
        assert sum(p.numel() for p in model.parameters()) == shape.params()
        models.append(model)
        rows.append(dict(keep=keep, experts=shape.num_experts, params=shape.params(), active_params=shape.active_params(),
                         flops=shape.flops_per_token(args.prefill_tokens), decode_tps=0.0, prefill_tps=0.0))
    for _ in range(args.reps):  # round-robin, best of reps: load from other processes hits every variant alike
        for model, r in zip(models, rows):
            r["decode_tps"] = max(r["decode_tps"], decode_tps(model, args.new_tokens, 1))
            r["prefill_tps"] = max(r["prefill_tps"], prefill_tps(model, args.prefill_tokens, 1))
    print(rows, flush=True)
    dense = rows[0]
    for r in rows:
        r["decode_ratio"] = r["decode_tps"] / dense["decode_tps"]
        r["prefill_ratio"] = r["prefill_tps"] / dense["prefill_tps"]
        r["decode_limit"] = dense["active_params"] / r["active_params"]  # weight bytes per decoded token
        r["prefill_limit"] = dense["params"] / r["params"]  # a long prompt reads every expert once
        r["compute_limit"] = dense["flops"] / r["flops"]  # every token still runs its top-k experts
    meta = dict(shape=args.shape, layers=args.layers, dtype="float32", threads=args.threads, experts_impl=args.experts_impl,
                new_tokens=args.new_tokens, prefill_tokens=args.prefill_tokens, reps=args.reps,
                cpu=platform.processor() or platform.machine(), versions=versions("python", "torch", "transformers"))
    out = Path(args.out)
    runs = json.loads(out.with_suffix(".json").read_text())["runs"] if args.append else []
    out.with_suffix(".json").write_text(json.dumps(dict(runs=[*runs, dict(meta=meta, rows=rows)]), indent=2))
    lines = [f"# MoE expert removal: speed vs dense ({args.shape} shape, {args.layers} layer(s), fp32, CPU, "
             f"{args.threads} threads, experts kernel {args.experts_impl})", "",
             "| experts kept | experts | params | active params | decode tok/s | decode x | decode limit x "
             "| prefill tok/s | prefill x | prefill bytes limit x | FLOPs limit x |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['keep']:.0%} | {r['experts']} | {r['params']:,} | {r['active_params']:,} | "
                     f"{r['decode_tps']:.1f} | {r['decode_ratio']:.2f} | {r['decode_limit']:.2f} | "
                     f"{r['prefill_tps']:.0f} | {r['prefill_ratio']:.2f} | {r['prefill_limit']:.2f} | "
                     f"{r['compute_limit']:.2f} |")
    before = out.with_suffix(".md").read_text() + "\n" if args.append else ""
    out.with_suffix(".md").write_text(before + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
