"""GRPO: TRL's GRPOTrainer with plain callable rewards (a task's score, or any TRL-signature function).

Defaults keep the paper's 8 samples per prompt and temperature 1.0 but short completions for a CPU.
The optimizer state is carried like the other tuners' (our AdamW is passed to GRPOTrainer).
With beta > 0 the reference model is a frozen in-memory copy of the policy at the start of this call
(a full copy on every rank, also under sharding):
trl would otherwise reload it from `config._name_or_path`, i.e. the model before pruning.
"""

from __future__ import annotations

import copy
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prunetune.config import bounded
from prunetune.errors import UserError
from prunetune.recovery.trainer import (
    TUNERS,
    CommonConfig,
    Context,
    FiniteLossMixin,
    RecoveryResult,
    fit,
    training_args,
)


@dataclass
class GRPORecoveryConfig(CommonConfig):
    learning_rate: float = bounded(1e-6, gt=0.0)
    """Peak AdamW learning rate (the paper's 1e-6)."""
    per_device_train_batch_size: int = bounded(8, ge=1, le=65536)
    """Completions per device per micro-batch (a multiple of num_generations overall)."""
    max_steps: int | None = bounded(None, ge=1)
    """Optimizer steps; default one pass over the prompts."""
    num_generations: int = bounded(8, ge=2, le=1024)
    """Samples per prompt (the paper's 8)."""
    temperature: float = bounded(1.0, gt=0.0)
    """Sampling temperature (the paper's 1.0)."""
    top_p: float = bounded(1.0, gt=0.0, le=1.0)
    """Nucleus sampling."""
    max_completion_length: int = bounded(64, ge=1, le=1_048_576)
    """New tokens per completion (small for CPU)."""
    beta: float = bounded(0.0, ge=0.0)
    """KL coefficient to the reference model (the paper's 0.01; trl's default 0 needs no reference copy)."""
    num_iterations: int = bounded(1, ge=1)
    """Policy updates per generated batch."""
    loss_type: str = "dapo"
    """trl loss_type: grpo | dr_grpo | dapo | bnpo ..."""
    scale_rewards: str = "group"
    """trl scale_rewards: group | batch | none."""
    use_vllm: bool = False
    """Generate the rollouts with vLLM through TRL (the paper's setup): needs vLLM importable in this Python."""
    vllm_mode: Literal["colocate", "server"] = "colocate"
    """colocate: vLLM in the training process, sharing the GPU | server: a `trl vllm-serve` process."""
    vllm_server_base_url: str | None = None
    """server mode: the server's URL (else vllm_server_host and vllm_server_port)."""
    vllm_server_host: str = "0.0.0.0"
    """server mode: the server's host."""
    vllm_server_port: int = bounded(8000, ge=1, le=65535)
    """server mode: the server's port."""
    vllm_gpu_memory_utilization: float = bounded(0.3, gt=0.0, le=1.0)
    """colocate mode: the share of GPU memory vLLM may take."""
    vllm_tensor_parallel_size: int = bounded(1, ge=1)
    """colocate mode: GPUs one vLLM engine spans."""

    def __post_init__(self):
        super().__post_init__()
        for key, off in (("max_tokens", None), ("lora", None)):
            if getattr(self, key) != off:
                raise UserError(f"grpo does not support config key '{key}'")

    def check_environment(self):
        """What this Python must have for the run (not for validating a recipe meant for a GPU cluster)."""
        if self.use_vllm and importlib.util.find_spec("vllm") is None:
            raise UserError(
                "use_vllm: TRL runs vLLM in this Python (colocate) or talks to `trl vllm-serve` with vLLM's "
                "client (server), and vLLM is not installed here: pip install 'prunetune[vllm]' (GPU)"
            )

    def trl_vllm_settings(self) -> dict:
        """The GRPOConfig keys for TRL's vLLM rollouts (none when use_vllm is off)."""
        if not self.use_vllm:
            return {}
        keys = ("use_vllm", "vllm_mode", "vllm_server_base_url", "vllm_server_host", "vllm_server_port",
                "vllm_gpu_memory_utilization", "vllm_tensor_parallel_size")
        return {k: getattr(self, k) for k in keys}


def _trainer_cls():
    from trl import GRPOTrainer

    class GRPORecoveryTrainer(FiniteLossMixin, GRPOTrainer):
        def __init__(self, *args, ref=None, beta: float = 0.0, **kwargs):
            super().__init__(*args, **kwargs)
            if beta:  # `ref` is copied before fit() shards the policy (FSDP2 modules cannot be copied)
                from trl.trainer import add_fused_lm_head

                ref = ref.eval().requires_grad_(False)
                # what GRPOTrainer does to a reference model of its own: log-probs in chunks, no full logits
                add_fused_lm_head(ref, temperature=self.temperature, cast_lm_head_to_fp32=self.args.cast_lm_head_to_fp32)
                self.ref_model = self.accelerator.prepare_model(ref, evaluation_mode=True)
                self.beta = beta

    return GRPORecoveryTrainer


def point_vllm_at_current_shape(model, tokenizer, work_dir) -> Path:
    """Write the model as it is now to `work_dir`/vllm_model and point its name_or_path there.

    TRL's colocated vLLM builds its engine from `model.name_or_path` and then only copies weights into it,
    so after a cut that path (the checkpoint the run loaded: the dense model) has the wrong shapes. Every
    rank builds its own engine, so rank 0 writes and the others wait for it.
    """
    from prunetune import dist
    from prunetune.checkpoint import save_checkpoint

    path = Path(work_dir) / "vllm_model"
    if dist.is_main():
        save_checkpoint(model, tokenizer, path, replace=True)
    dist.barrier()
    model.config.name_or_path = str(path)
    model.name_or_path = str(path)
    return path


@TUNERS.register("grpo", options=GRPORecoveryConfig)
def train(model, tokenizer, records: list[dict], cfg: GRPORecoveryConfig, ctx: Context) -> RecoveryResult:
    """GRPO with TRL's GRPOTrainer; the reward is a task's score (the evaluation metric) plus a format bonus."""
    import datasets
    from trl import GRPOConfig

    if not ctx.reward_funcs:
        raise UserError("grpo needs reward functions (--task NAME, or reward_funcs=...)")
    if "prompt" not in records[0]:
        raise UserError(f"grpo data has no field 'prompt'; fields are: {', '.join(map(str, records[0]))}")
    n_gen = cfg.num_generations
    args = training_args(
        cfg,
        ctx,
        args_cls=GRPOConfig,
        num_generations=n_gen,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_completion_length=cfg.max_completion_length,
        beta=0.0,  # see the module docstring: the reference copy is made by GRPORecoveryTrainer
        num_iterations=cfg.num_iterations,
        loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards,
        log_completions=False,
        **cfg.trl_vllm_settings(),
        include_num_input_tokens_seen="no",  # GRPOTrainer counts prompt + completion tokens itself
    )
    if cfg.max_steps:
        args.max_steps = cfg.max_steps
    else:  # one pass: every prompt sampled num_generations times, num_iterations updates per batch
        per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        args.max_steps = max(1, math.ceil(len(records) * n_gen * cfg.num_iterations / per_step))
    funcs = ctx.reward_funcs if isinstance(ctx.reward_funcs, list | tuple) else [ctx.reward_funcs]
    if cfg.use_vllm and cfg.vllm_mode == "colocate":
        point_vllm_at_current_shape(model, tokenizer, ctx.work_dir)
    return fit(
        _trainer_cls(),
        model,
        tokenizer,
        datasets.Dataset.from_list(records),
        cfg,
        ctx,
        args,
        # frac_reward_zero_std: the share of completions whose group all scored alike, so carry no
        # advantage (the loss cannot tell: on-policy it is ~0 whenever a group's lengths match)
        extra_metrics=("reward", "reward_std", "frac_reward_zero_std", "kl"),
        reward_funcs=list(funcs),
        check_loss=False,  # GRPO's loss is an advantage-weighted ratio, not a fit: its size means little
        ref=copy.deepcopy(model) if cfg.beta else None,
        beta=cfg.beta,
    )
