"""Rank helpers for `torchrun`: every rank scores and cuts identically, only rank 0 writes.

The loop starts the process group itself (gloo on CPU, nccl on GPU) so that ranks can wait for each
other before the first recovery; the Trainer and accelerate then reuse that group.
"""

from __future__ import annotations

import os


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def init_if_needed() -> None:
    import torch
    import torch.distributed as dist

    if world_size() > 1 and dist.is_available() and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def check_same_model(model, what: str) -> None:
    """Fail loudly if ranks hold different weights (e.g. a scorer that is not deterministic)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    with torch.no_grad():
        local = torch.tensor(
            [
                float(sum(p.double().sum() for p in model.parameters())),
                float(sum(p.numel() for p in model.parameters())),
            ],
            dtype=torch.float64,
        )
    gathered = [torch.zeros_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, local)
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        raise RuntimeError(f"ranks diverged after {what}: {[g.tolist() for g in gathered]}")
