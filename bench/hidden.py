"""Hidden-size pruning (Minitron's width lever): perplexity with no recovery, and what it buys in speed.

Quality: SmolLM2-135M-Instruct with 90% / 75% of its hidden size kept (residual-stream channels removed
everywhere, norms compensated), against MLP pruning at the same total and the same non-embedding
parameter count, no recovery; teacher-forced perplexity on held-out GSM-style worked solutions
(reasoning-gym gsm_symbolic, seed 4242), the setup of bench/results/smollm2_scorers.md.
Speed: a randomly initialised Qwen2.5-1.5B shape (fewer layers) at 75% / 50% of its hidden size kept, decode
and prefill tokens/s as ratios against dense in one run, beside the physical limit for decode (dense / pruned
bytes of weights read per token: every weight once, lm_head included, embeddings as one row).

  prunetune import-gguf smollm2 --out models/smollm2-135m-instruct
  python bench/hidden.py --model models/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

try:
    from bench.common import ROOT, versions
    from bench.smollm2_scorers import perplexity
    from bench.speed import decode_tps, prefill_tps
except ImportError:  # run as `python bench/hidden.py`
    from common import ROOT, versions
    from smollm2_scorers import perplexity
    from speed import decode_tps, prefill_tps

QWEN25_15B = dict(model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_attention_heads=12,
                  num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True, max_position_embeddings=4096)


def hidden_kept(width: int, keep: float, round_to: int) -> int:
    return max(round_to, round(width * keep / round_to) * round_to)


def mlp_match(shape, target: int, non_embedding: bool) -> int:
    """MLP neurons per layer whose removal brings the (non-embedding) parameter count nearest to `target`."""
    count = (lambda s: s.non_embedding_params()) if non_embedding else (lambda s: s.params())
    return min(range(shape.intermediate_size), key=lambda n: abs(count(shape.after(mlp_removed=n)) - target))


@torch.no_grad()
def uncompensate(model, dense_hidden: int) -> None:
    """Undo surgery's sqrt(H / H_k) on every norm (the ablation; Llama-form norms without post-norms only)."""
    from prunetune.models import get_adapter

    a = get_adapter(model)
    assert not a.post_norms and not a.norm_offset, "the ablation covers Llama-form norms only"
    factor = (dense_hidden / model.config.hidden_size) ** 0.5
    for norm in [n for layer in a.layers(model) for n in a.layer_norms(layer)[0]] + [a.final_norm_module(model)]:
        norm.weight /= factor


def quality(args) -> dict:
    import reasoning_gym

    from prunetune.checkpoint import load_model
    from prunetune.models.shape import ModelShape
    from prunetune.pruning.importance.calibration import calibration_inputs
    from prunetune.pruning.prune import StepSpec, prune_step

    dense, tok = load_model(args.model)
    shape = ModelShape.from_config(dense.config)
    ds = reasoning_gym.create_dataset("gsm_symbolic", size=args.texts, seed=4242)
    texts = [f"Question: {x['question']}\nAnswer: {x['metadata']['answer_cot']}" for x in ds]
    batches, _ = calibration_inputs(tok, "arith", limit=args.calibration_samples, max_length=256)
    rows = [dict(method="dense", hidden=shape.hidden_size, intermediate=shape.intermediate_size,
                 params=shape.params(), non_embedding=shape.non_embedding_params(),
                 perplexity=perplexity(dense, tok, texts))]
    print(rows[-1], flush=True)

    def measure(label: str, spec: StepSpec, undo_norms: bool = False) -> None:
        model = copy.deepcopy(dense)
        t = time.time()
        prune_step(model, spec, batches, progress=False)
        if undo_norms:
            uncompensate(model, shape.hidden_size)
        s = ModelShape.from_config(model.config)
        rows.append(dict(method=label, hidden=s.hidden_size, intermediate=s.intermediate_size, params=s.params(),
                         non_embedding=s.non_embedding_params(), perplexity=perplexity(model, tok, texts),
                         seconds=round(time.time() - t, 1)))
        print(rows[-1], flush=True)

    for keep in [float(k) for k in args.keeps.split(",")]:
        removed = shape.hidden_size - hidden_kept(shape.hidden_size, keep, args.round_to)
        pruned = shape.after(hidden_removed=removed)
        for scorer in args.scorers.split(","):
            name, _, site = scorer.partition(":")
            opts = {"site": site} if site else {}
            measure(f"hidden:{scorer} {keep:.0%}", StepSpec(hidden_channels=removed, hidden_importance=name,
                                                            hidden_options=opts))
        if args.uncompensated:
            measure(f"hidden:activation {keep:.0%}, norms not compensated", StepSpec(hidden_channels=removed), True)
        for non_emb in [m == "non_embedding" for m in args.match.split(",") if m]:
            n = mlp_match(shape, pruned.non_embedding_params() if non_emb else pruned.params(), non_emb)
            what = "non-embedding" if non_emb else "total"
            measure(f"mlp:activation, {what} params of hidden {keep:.0%}", StepSpec(mlp_neurons=n))
    return {"rows": rows, "texts": args.texts, "calibration_samples": args.calibration_samples}


def weight_bytes(model) -> int:
    """Bytes of weights one decode step reads: all of them, except the embedding table (one row)."""
    emb = model.get_input_embeddings().weight
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    tied = model.get_output_embeddings().weight is emb
    return total - (0 if tied else emb.numel() * emb.element_size() - emb.shape[1] * emb.element_size())


def speed(args) -> dict:
    from transformers import AutoConfig, AutoModelForCausalLM

    from prunetune.pruning.plan import PruningPlan
    from prunetune.pruning.surgery import apply_plan

    data = dict(QWEN25_15B, num_hidden_layers=args.layers)
    config = AutoConfig.for_model(data.pop("model_type"), **data)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    models = {"dense": AutoModelForCausalLM.from_config(config, dtype=dtype).to(args.device).eval()}
    for keep in [float(k) for k in args.speed_keeps.split(",")]:
        m = copy.deepcopy(models["dense"])
        kept = hidden_kept(config.hidden_size, keep, args.round_to)
        apply_plan(m, PruningPlan(hidden_channels=list(range(config.hidden_size - kept))))
        models[f"hidden {keep:.0%}"] = m
    out = {name: {"hidden_size": m.config.hidden_size, "weight_bytes": weight_bytes(m)} for name, m in models.items()}
    for _ in range(args.reps):  # round robin: on a shared machine every model meets the same load
        for name, m in models.items():
            row = out[name]
            for b in [int(x) for x in args.batches.split(",")]:
                row[f"decode_b{b}"] = max(row.get(f"decode_b{b}", 0.0), decode_tps(m, b, args.new_tokens, args.device, 1))
            row["prefill"] = max(row.get("prefill", 0.0), prefill_tps(m, 1, args.prefill, args.device, 1))
            print(name, row, flush=True)
    base = out["dense"]
    for row in out.values():
        row["bytes_limit"] = base["weight_bytes"] / row["weight_bytes"]
        for k in [k for k in row if k.startswith(("decode", "prefill")) and not k.endswith("x")]:
            row[k + "_x"] = row[k] / base[k]
    return {"layers": args.layers, "device": args.device, "dtype": args.dtype, "models": out}


def write(args, res: dict, cmd: str) -> None:
    out = Path(args.out)
    old = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").is_file() else {}
    old.update(res)
    old.setdefault("commands", {}).update({k: cmd for k in res if k != "commands"})
    out.with_suffix(".json").write_text(json.dumps(old, indent=2))
    v = versions("torch", "transformers")
    lines = ["# Hidden-size pruning: quality with no recovery, and speed", "",
             f"torch {v['torch']}, transformers {v['transformers']}; 2 shared CPU cores.", ""]
    if "quality" in old:
        q = old["quality"]
        d = q["rows"][0]
        lines += [f"## SmolLM2-135M-Instruct, no recovery (`{old['commands']['quality']}`)", "",
                  f"Perplexity on {q['texts']} held-out gsm_symbolic worked solutions; calibration: "
                  f"{q['calibration_samples']} built-in arith texts.", "",
                  "| pruning | hidden | MLP width | params | non-emb params | perplexity | x dense |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['method']} | {r['hidden']} | {r['intermediate']} | {r['params'] / d['params']:.1%} | "
                  f"{r['non_embedding'] / d['non_embedding']:.1%} | {r['perplexity']:.2f} | "
                  f"{r['perplexity'] / d['perplexity']:.2f} |" for r in q["rows"]]
        lines.append("")
    if "speed" in old:
        s = old["speed"]
        keys = [k for k in next(iter(s["models"].values())) if k.endswith("_x")]
        lines += [f"## Qwen2.5-1.5B shape, {s['layers']} layers, random weights, {s['device']} {s['dtype']} "
                  f"(`{old['commands']['speed']}`)", "",
                  "Tokens/s as ratios against dense in one run; bytes limit = dense / pruned weight bytes read per "
                  "decode token.", "",
                  "| model | hidden | " + " | ".join(k[:-2] for k in keys) + " | bytes limit |",
                  "|---|---|" + "---|" * (len(keys) + 1)]
        lines += [f"| {n} | {r['hidden_size']} | " + " | ".join(f"{r[k]:.2f}x" for k in keys)
                  + f" | {r['bytes_limit']:.2f}x |" for n, r in s["models"].items()]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/smollm2-135m-instruct")
    ap.add_argument("--part", choices=["quality", "speed"], default="quality")
    ap.add_argument("--keeps", default="0.9,0.75")
    ap.add_argument("--scorers", default="activation,activation:residual,random")
    ap.add_argument("--match", default="total,non_embedding", help="MLP controls at equal total / non-embedding params")
    ap.add_argument("--uncompensated", action="store_true", help="add rows with the norm compensation undone")
    ap.add_argument("--round-to", type=int, default=8)
    ap.add_argument("--texts", type=int, default=60)
    ap.add_argument("--calibration-samples", type=int, default=32)
    ap.add_argument("--speed-keeps", default="0.75,0.5")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--prefill", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench/results/hidden"))
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cmd = "python bench/hidden.py " + " ".join(sys.argv[1:] if argv is None else argv)
    res = quality(args) if args.part == "quality" else speed(args)
    write(args, {args.part: res}, cmd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
