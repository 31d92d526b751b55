"""Per-rank memory of parameters, gradients and AdamW state: FSDP2 (`sharding: fsdp`) vs DDP (`none`).

Runs itself under `torchrun --nproc_per_node=2` (gloo on CPU). Each rank recovers the same random
Llama with `cpt` through prunetune's recovery (the Trainer path, once per sharding), and a global
optimizer step hook counts the bytes this rank holds at the moment of each step: its local shard of
every parameter, gradient and AdamW moment (`DTensor.to_local()`; a plain tensor counts whole). Bytes
are counted, not read from the allocator: on CPU the process also holds the full model it loaded and
the full model gathered back for pruning, which no sharding removes (see the notes).

    .venv/bin/python bench/sharded_memory.py      # writes bench/results/sharded_memory.{md,json}
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

try:
    from bench.common import ROOT, versions
except ImportError:  # run as `python bench/sharded_memory.py`
    from common import ROOT, versions

MODEL = dict(hidden_size=256, intermediate_size=704, num_hidden_layers=4, num_attention_heads=8,
             num_key_value_heads=4, head_dim=32)
CONFIG = {"max_steps": 2, "max_length": 32, "per_device_train_batch_size": 2, "learning_rate": 1e-4}
SHARDINGS = ("none", "fsdp")


def _bytes_at_step(optimizer, held: dict) -> None:
    from prunetune.recovery.sharding import local_bytes

    params = [p for g in optimizer.param_groups for p in g["params"]]
    state = [v for st in optimizer.state.values() for v in st.values() if v.ndim]
    now = {"parameters": local_bytes(params), "gradients": local_bytes(p.grad for p in params),
           "optimizer_state": local_bytes(state)}
    for k, v in now.items():
        held[k] = max(held.get(k, 0), v)


def worker(out: Path) -> None:
    import torch
    import torch.distributed as tdist
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from prunetune import dist
    from prunetune.builtin import arith
    from prunetune.builtin.tiny import tiny_model
    from prunetune.recovery import recover

    dist.init_if_needed()
    records = [{"text": arith.format_text(r)} for r in arith.records(64)]
    held: dict = {}
    register_optimizer_step_post_hook(lambda opt, args, kwargs: _bytes_at_step(opt, held))
    rows = {}
    for s in SHARDINGS:
        held.clear()
        model, tok = tiny_model("llama", **MODEL)
        recover(model, tok, "cpt", records, {**CONFIG, "sharding": s}, work_dir=out / f"work{dist.rank()}_{s}",
                progress=False)
        rows[s] = dict(held)
    per_rank = [None] * dist.world_size()
    tdist.all_gather_object(per_rank, rows)
    if dist.is_main():
        n = sum(p.numel() for p in tiny_model("llama", **MODEL)[0].parameters())
        (out / "sharded_memory.raw.json").write_text(json.dumps({"parameters": n, "ranks": per_rank}))
    del torch


def report(raw: dict, cmd: str) -> tuple[dict, str]:
    parts = ("parameters", "gradients", "optimizer_state")
    ranks = raw["ranks"]
    table = []
    for r, rows in enumerate(ranks):
        for part in (*parts, "total"):
            ddp, fsdp = (sum(rows[s][p] for p in parts) if part == "total" else rows[s][part] for s in SHARDINGS)
            table.append({"rank": r, "part": part, "ddp_bytes": ddp, "fsdp_bytes": fsdp,
                          "ratio": round(fsdp / ddp, 4)})
    result = {"command": cmd, "model": {**MODEL, "family": "llama", "parameters": raw["parameters"], "dtype": "float32"},
              "world_size": len(ranks), "config": CONFIG, "rows": table,
              "environment": versions("python", "torch", "transformers", "accelerate")}
    lines = ["# Per-rank memory: FSDP2 vs DDP, 2 ranks (gloo, CPU)", "", f"Command: `{cmd}`", "",
             f"Model: random Llama, {raw['parameters']:,} parameters, fp32 "
             f"(hidden {MODEL['hidden_size']}, {MODEL['num_hidden_layers']} layers, MLP {MODEL['intermediate_size']}); "
             f"cpt recovery, {CONFIG['max_steps']} steps. Bytes this rank holds at an optimizer step "
             "(local shards counted), largest over the steps.", "",
             "| rank | part | DDP MiB | FSDP2 MiB | FSDP2 / DDP |", "|---|---|---|---|---|"]
    for row in table:
        lines.append(f"| {row['rank']} | {row['part']} | {row['ddp_bytes'] / 2**20:.2f} | "
                     f"{row['fsdp_bytes'] / 2**20:.2f} | {row['ratio']:.3f} |")
    env = result["environment"]
    lines += ["", "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()), ""]
    return result, "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        __file__, "--worker", tmp], env=env, check=True)
        raw = json.loads((Path(tmp) / "sharded_memory.raw.json").read_text())
    result, md = report(raw, "python bench/sharded_memory.py")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sharded_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "sharded_memory.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
