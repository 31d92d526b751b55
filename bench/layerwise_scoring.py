"""Layer-wise scoring: peak memory and time of whole-model vs layer-by-layer scoring, each in its own process.

A randomly initialised model with Qwen2.5-1.5B's shapes (hidden 1536, intermediate 8960, 12 heads / 2 KV
heads, vocab 151936, tied embeddings; fewer layers than its 28 so it runs in minutes on a CPU) is saved as
a safetensors checkpoint, then scored (MLP `activation` and layer `block_influence`) three ways:

- whole: the model loaded (from_pretrained), every batch through the whole model;
- layerwise (in RAM): the same loaded model, `layerwise=True`: on a GPU this keeps one layer plus the
  activations in accelerator memory; on a CPU-only machine the compute device IS the host, so host
  memory cannot show it and this row measures the cost of the layer-major order;
- layerwise (from disk): the layers never all in memory: the model is built under accelerate's
  init_empty_weights, only the non-layer weights loaded, and `Layerwise(checkpoint=DIR)` reads one
  layer at a time; host memory then shows what a GPU would hold.

Peak = VmHWM of the worker process minus its resident memory after imports (so it counts weights,
activations and the loader's buffers). Scores of every mode are checked equal to the whole-model ones.

    .venv/bin/python bench/layerwise_scoring.py                 # writes bench/results/layerwise_scoring.{md,json}
    .venv/bin/python bench/layerwise_scoring.py --layers 4 --out /tmp/lw
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

try:
    from bench.common import (
        ROOT,
        command_footer,
        peak_rss_mib,
        rss_mib,
        run_worker,
        torch_machine,
        write_page,
    )
except ImportError:  # run as `python bench/layerwise_scoring.py`
    from common import ROOT, command_footer, peak_rss_mib, rss_mib, run_worker, torch_machine, write_page

MODES = ("whole", "layerwise_ram", "layerwise_disk")


def qwen_config(layers: int):
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=layers,
        num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=4096,
        tie_word_embeddings=True, rms_norm_eps=1e-6, pad_token_id=0,
    )


def save_model(layers: int, path: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(qwen_config(layers)).eval()
    model.save_pretrained(path)
    embed = model.get_input_embeddings().weight.numel()
    layer = sum(p.numel() for p in model.model.layers[0].parameters())
    return {"params": sum(p.numel() for p in model.parameters()), "embedding_params": embed, "layer_params": layer}


def batches(args):
    import torch

    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(args.batches):
        ids = torch.randint(3, 151936, (args.batch_size, args.seq), generator=g)
        mask = torch.ones_like(ids)
        mask[1:, args.seq * 3 // 4 :] = 0  # padded rows
        out.append({"input_ids": ids.masked_fill(mask == 0, 0), "attention_mask": mask})
    return out


def worker(args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from prunetune.pruning.importance import Layerwise, score_layers, score_mlp

    torch.set_num_threads(args.threads)
    calib = batches(args)
    base = rss_mib()
    t0 = time.perf_counter()
    if args.worker == "layerwise_disk":
        from accelerate import init_empty_weights
        from safetensors import safe_open

        with init_empty_weights(include_buffers=False):
            model = AutoModelForCausalLM.from_config(qwen_config(args.layers))
        with safe_open(Path(args.model) / "model.safetensors", "pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys() if ".layers." not in k}  # noqa: SIM118
        model.load_state_dict(state, strict=False, assign=True)
        model.tie_weights()
        layerwise = Layerwise(checkpoint=args.model)
    else:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
        layerwise = Layerwise() if args.worker == "layerwise_ram" else None
    model.eval()
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    mlp = score_mlp(model, "activation", calib, progress=False, layerwise=layerwise)
    mlp_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    lay = score_layers(model, "block_influence", calib, progress=False, layerwise=layerwise)
    layer_s = time.perf_counter() - t0
    torch.save({"mlp": mlp, "layers": lay}, Path(args.scores))
    return {"mode": args.worker, "peak_mib": round(peak_rss_mib() - base, 1), "load_seconds": round(load_s, 2),
            "mlp_activation_seconds": round(mlp_s, 2), "block_influence_seconds": round(layer_s, 2)}


def render(res: dict, command: str) -> str:
    a, sizes = res["args"], res["sizes"]
    whole = next(r for r in res["runs"] if r["mode"] == "whole")
    mib = 4 / 2**20
    lines = [
        "# Layer-wise scoring: memory and time",
        "",
        f"Random Qwen2.5-1.5B-shaped model with {a['layers']} of its 28 layers, fp32 on CPU: "
        f"{sizes['params'] / 1e6:.0f}M parameters ({sizes['params'] * mib:.0f} MiB), of which the tied embedding "
        f"{sizes['embedding_params'] * mib:.0f} MiB and each layer {sizes['layer_params'] * mib:.0f} MiB. "
        f"Calibration: {a['batches']} batches of {a['batch_size']} x {a['seq']} tokens; {a['threads']} thread(s). "
        "Scored with MLP `activation` then layer `block_influence`; each mode in its own process.",
        "",
        "| mode | peak MiB over imports | vs whole | load s | MLP activation s | block influence s | scores equal |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in res["runs"]:
        lines.append(
            f"| {r['mode']} | {r['peak_mib']:.0f} | {r['peak_mib'] / whole['peak_mib']:.2f}x | {r['load_seconds']:.1f} | "
            f"{r['mlp_activation_seconds']:.1f} | {r['block_influence_seconds']:.1f} | {r['equal']} |"
        )
    lines += command_footer(command, res["machine"])
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--batches", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "layerwise_scoring"))
    p.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--scores", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        sizes = save_model(args.layers, tmp)
        runs, scores = [], {}
        common = ["--layers", str(args.layers), "--batches", str(args.batches), "--batch-size", str(args.batch_size),
                  "--seq", str(args.seq), "--threads", str(args.threads), "--model", tmp]
        for mode in MODES:
            out = Path(tmp) / f"{mode}.pt"
            runs.append(run_worker(__file__, mode, "--scores", str(out), *common))
            scores[mode] = torch.load(out)
            print(runs[-1], flush=True)
    for r in runs:
        r["equal"] = all(torch.allclose(scores[r["mode"]][k], scores["whole"][k], rtol=1e-5, atol=1e-6)
                         for k in ("mlp", "layers"))
    res = {"args": {k: v for k, v in vars(args).items() if k not in ("worker", "model", "scores", "out")},
           "sizes": sizes, "runs": runs, "machine": torch_machine()}
    command = "nice .venv/bin/python bench/layerwise_scoring.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_page(args.out, res, render(res, command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
