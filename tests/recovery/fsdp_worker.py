"""Run under torchrun by test_fsdp.py. First `prunetune recover --out OUT/out ... sharding=fsdp` (rank 0
writes); then the same recovery, cut (AdamW moments carried and sliced with the removed units) and second
recovery, once under DDP and once under FSDP2. Rank R saves what it got to OUT/rankR.pt.
Usage: fsdp_worker.py OUT_DIR DATA"""

import copy
import os
import sys
from pathlib import Path

import torch

from prunetune import dist
from prunetune.builtin.tiny import tiny_model
from prunetune.cli import build_parser
from prunetune.commands import recover as recover_cmd
from prunetune.pruning.plan import PruningPlan
from prunetune.pruning.surgery import apply_plan
from prunetune.recovery import recover
from tests.recovery.helpers import MEMO, TEMPLATE

CONFIG = {"max_steps": 2, "max_length": 16, "per_device_train_batch_size": 2, "learning_rate": 1e-3,
          "lr_scheduler_type": "constant", "warmup_ratio": 0.0}


def recover_cut_recover(model, tok, sharding: str, work: Path):
    records = [{"text": TEMPLATE.format(**r)} for r in MEMO]
    cfg = {**CONFIG, "sharding": sharding}
    first = recover(model, tok, "cpt", records, cfg, work_dir=work / "1", progress=False)
    model = first.model
    assert type(model).__name__ == "LlamaForCausalLM"  # a plain module again, not FSDP's subclass
    assert not any(type(p).__name__ == "DTensor" for p in model.parameters())
    plan = PruningPlan(mlp_neurons={i: list(range(0, 96, 4)) for i in range(4)}, kv_groups={i: [1] for i in range(4)})
    state = apply_plan(model, plan, optimizer_state=first.optimizer_state)
    second = recover(model, tok, "cpt", records, cfg, work_dir=work / "2", progress=False, optimizer_state=state)
    return {
        "weights": {k: v.detach().clone() for k, v in second.model.state_dict().items()},
        "moments": second.optimizer_state,
        "skipped": second.info["optimizer_state_skipped"],
        "rank_bytes": second.info["rank_bytes"],
    }


if __name__ == "__main__":
    out, data = Path(sys.argv[1]), sys.argv[2]
    dist.init_if_needed()
    cli = recover_cmd.execute(build_parser().parse_args([
        "recover", "tiny-random-llama", "--out", str(out / "out"), "--method", "cpt", "--data", data, "--quiet",
        "max_steps=2", "max_length=16", "per_device_train_batch_size=2", "sharding=fsdp"]))
    start, tok = tiny_model("llama")
    start.train()
    work = out / f"work{os.environ['RANK']}"
    runs = {s: recover_cut_recover(copy.deepcopy(start), tok, s, work / s) for s in ("none", "fsdp")}
    runs["cli"] = {"weights": cli.model.state_dict(), "steps": cli.steps, "world_size": cli.info["world_size"]}
    torch.save(runs, out / f"rank{os.environ['RANK']}.pt")
