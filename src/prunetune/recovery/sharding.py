"""How recovery splits the model across ranks (`recovery.config.sharding`), and the full model it hands back.

fsdp / hybrid_fsdp shard with FSDP2 through transformers' own `DistributedConfig` (the route
`from_pretrained(distributed_config=...)` takes, applied to the model in memory): the Trainer sees a
model that owns its sharding and skips DDP. The same code runs on CPU (gloo) and GPU (nccl), which
accelerate's FSDP plugin does not: it drops FSDP on CPU. zero2 / zero3 hand the Trainer a DeepSpeed
ZeRO config (`TrainingArguments(deepspeed=...)`). Between recoveries the loop prunes a plain full
model on every rank, so training ends by gathering the full weights (and AdamW moments) back.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path

import torch

from prunetune import dist
from prunetune.errors import UserError

FSDP = ("fsdp", "hybrid_fsdp")
ZERO = ("zero2", "zero3")
GATHERED = (*FSDP, "zero3")  # strategies that leave each rank a shard of every weight


_TIED = ("{key}.sharding: {s} does not support tied input/output embeddings yet (tie_word_embeddings: true); "
         "use sharding: none or zero2")


def check(cfg, *, carry_optimizer: bool = False, for_run: bool = True, key: str = "recovery.config",
          tied_embeddings: bool = False) -> None:
    """Refuse, before any weights load, a sharding that cannot work here (each a one-line UserError).

    The config alone decides what no machine can run; `for_run` adds what this launch lacks
    (deepspeed, processes, nodes, a GPU for offload). `tied_embeddings`: the model's config ties them.
    """
    s = cfg.sharding
    if tied_embeddings and s in ("fsdp", "hybrid_fsdp"):
        raise UserError(_TIED.format(key=key, s=s))
    if s == "none":
        return
    if carry_optimizer and s in ZERO:
        raise UserError(
            f"recovery.carry_optimizer cannot carry AdamW moments under {key}.sharding: {s} (DeepSpeed keeps "
            "them in flat partitions, not per parameter); use sharding: fsdp or carry_optimizer: false"
        )
    if not for_run:
        return
    if s in ZERO and importlib.util.find_spec("deepspeed") is None:
        raise UserError(f"sharding: {s} needs deepspeed (pip install deepspeed)")
    if cfg.deepspeed_config is not None and not Path(cfg.deepspeed_config).is_file():
        raise UserError(f"{key}.deepspeed_config: no such file: {cfg.deepspeed_config}")
    world = dist.world_size()
    if world < 2 and not _one_rank_group():
        raise UserError(
            f"{key}.sharding: {s} needs several processes (torchrun --nproc_per_node=N); this is one"
        )
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if s == "hybrid_fsdp" and (world % local or world // local < 2):
        raise UserError(
            f"{key}.sharding: hybrid_fsdp shards within a node and replicates across nodes; this launch has "
            f"{world} processes on {world // local if world % local == 0 else '?'} node(s): use sharding: fsdp"
        )
    if cfg.cpu_offload and not torch.cuda.is_available():
        raise UserError(f"{key}.cpu_offload needs a GPU (on CPU every tensor already lives in CPU memory)")


def _one_rank_group() -> bool:
    """A process group of one rank that the caller started on purpose (bench/gpu_check.py runs FSDP2's and
    ZeRO's code paths on one GPU this way; FSDP2 with cpu_offload also fits a model one GPU cannot hold).
    A plain one-process launch has no group, and sharding it stays an error."""
    import torch.distributed as tdist

    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() == 1


def zero_config(cfg) -> dict:
    """A DeepSpeed ZeRO-2/3 config: "auto" values the Trainer fills from TrainingArguments; no optimizer
    or scheduler block, so DeepSpeed wraps ours (the Trainer's create_optimizer / create_scheduler)."""
    stage = 2 if cfg.sharding == "zero2" else 3
    zero: dict = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True}
    if stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    if cfg.cpu_offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    out = {
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"},
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
    }
    if cfg.cpu_offload:
        out["zero_force_ds_cpu_optimizer"] = False  # our torch AdamW steps on the offloaded partitions
    return out


def training_kwargs(cfg, work_dir: Path) -> dict:
    """TrainingArguments keys for this sharding: `deepspeed` (a config file) for zero2 / zero3, else none."""
    if cfg.sharding not in ZERO:
        return {}
    path = cfg.deepspeed_config
    if path is None:
        path = Path(work_dir) / f"deepspeed_{cfg.sharding}.json"
        path.write_text(json.dumps(zero_config(cfg), indent=2))
    return {"deepspeed": str(path)}


@lru_cache(maxsize=4)
def _mesh(replicate: int, shard: int, offload: bool):
    """One device mesh per layout for the whole run (each would otherwise open new process groups)."""
    from transformers import PreTrainedModel
    from transformers.distributed import DistributedConfig

    config = DistributedConfig(fsdp_size=shard, dp_replicate_size=replicate, fsdp_cpu_offload=offload)
    config, _, mesh = PreTrainedModel.prepare_distribute_model(config)
    return config, mesh


def shard(model, cfg):
    """FSDP2 over the ranks (hybrid: sharded within a node, replicated across nodes), in place; other
    shardings return the model as it is (DDP and DeepSpeed wrap it inside the Trainer)."""
    if cfg.sharding not in FSDP:
        return model
    from transformers import PreTrainedModel

    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    if out is not None and inp.weight is out.weight:  # torch 2.13 refuses a tied weight in two FSDP groups
        raise UserError(_TIED.format(key="recovery.config", s=cfg.sharding))
    world = dist.world_size()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world)) if cfg.sharding == "hybrid_fsdp" else world
    config, mesh = _mesh(world // local, local, bool(cfg.cpu_offload))
    config = copy.deepcopy(config)  # maybe_distribute_model stores it on model.config; keep ours clean
    return PreTrainedModel.maybe_distribute_model(model, config, mesh)


def skeleton(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` whose parameters are on the meta device (no memory), to receive the gathered
    weights after training: a plain module, free of FSDP's hooks and class swaps."""
    memo = {id(p): torch.nn.Parameter(torch.empty_like(p, device="meta"), p.requires_grad) for p in model.parameters()}
    return copy.deepcopy(model, memo)


def gather_model(trained, shell: torch.nn.Module, device) -> torch.nn.Module:
    """The trained weights, full on every rank (each rank prunes the same model next), loaded into `shell`.

    FSDP2 / ZeRO-3 hold shards: gathered with torch.distributed.checkpoint's full state dict /
    DeepSpeed's GatheredParameters. Peak per rank: the full model plus its own shard.
    """
    if _is_zero3(trained):
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(trained.parameters()), modifier_rank=None):
            sd = {k: v.detach().clone() for k, v in trained.state_dict().items()}
    else:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        sd = get_model_state_dict(trained, options=StateDictOptions(full_state_dict=True))
    missing, unexpected = shell.load_state_dict(sd, strict=False, assign=True)
    assert not unexpected and not (set(missing) - _tied(shell)), (missing, unexpected)
    if hasattr(shell, "tie_weights"):
        shell.tie_weights()  # assign replaced each tied parameter separately
    return shell.to(device)


def _tied(model) -> set[str]:
    return set(getattr(model, "_tied_weights_keys", None) or ())


def _is_zero3(model) -> bool:
    return any(hasattr(p, "ds_id") for p in model.parameters())


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of a (possibly sharded) tensor."""
    from torch.distributed.tensor import DTensor

    return t.to_local() if isinstance(t, DTensor) else t


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A sharded tensor gathered whole (a collective: every rank calls it, in the same order)."""
    from torch.distributed.tensor import DTensor

    if not isinstance(t, DTensor):
        return t
    mesh_device = t.device_mesh.device_type
    if t.to_local().device.type != mesh_device:  # offloaded to CPU, gathered over nccl
        t = t.to(mesh_device)
    return t.full_tensor()


def shard_like(full: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """`full` (e.g. a carried AdamW moment) split the way `param` is split across ranks."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if not isinstance(param, DTensor):
        return full.to(device=param.device, dtype=param.dtype).clone()
    full = full.to(device=param.device_mesh.device_type, dtype=param.dtype)
    out = distribute_tensor(full, param.device_mesh, param.placements)
    return out.to(param.to_local().device) if out.to_local().device != param.to_local().device else out


def max_abs(model: torch.nn.Module) -> float:
    """The largest |weight| over the whole model, the same on every rank even when it is sharded."""
    from torch.distributed.tensor import DTensor

    params = list(model.parameters())
    with torch.no_grad():
        m = max((float(t.abs().max()) for t in (local_tensor(p.detach()) for p in params) if t.numel()), default=0.0)
    if any(isinstance(p, DTensor) for p in params):
        import torch.distributed as tdist

        m_t = torch.tensor([m], dtype=torch.float64, device=_comm_device())
        tdist.all_reduce(m_t, op=tdist.ReduceOp.MAX)
        m = float(m_t.item())
    return m


def _comm_device() -> str:
    import torch.distributed as tdist

    return "cuda" if tdist.get_backend() == "nccl" else "cpu"


def local_bytes(tensors) -> int:
    """Bytes this rank holds of `tensors` (a sharded tensor counts only its local shard)."""
    return sum(local_tensor(t).numel() * local_tensor(t).element_size() for t in tensors if t is not None)


def rank_bytes(model, optimizer) -> dict:
    """This rank's bytes of parameters and optimizer state (the memory sharding divides)."""
    state = [v for st in optimizer.state.values() for v in st.values() if torch.is_tensor(v) and v.ndim]
    return {"parameters": local_bytes(model.parameters()), "optimizer_state": local_bytes(state)}
