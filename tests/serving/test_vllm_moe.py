"""The serving check for MoE families: vLLM loads a model with experts, expert neurons (and shared-expert
neurons, a KV group where the family allows it, a layer) removed, with transformers' log-probs."""

from pathlib import Path

import pytest
import torch

from prunetune.builtin.tiny import tiny_model
from prunetune.checkpoint import save_checkpoint
from prunetune.models import MOE_FAMILIES
from prunetune.models.shape import ModelShape
from prunetune.pruning.importance import calibration_batches
from prunetune.pruning.prune import StepSpec, prune_step
from tests.serving.test_vllm import PROMPTS, TOLERANCE, _hf_logprobs, _vllm_python

pytestmark = [pytest.mark.slow, pytest.mark.serving]


def _pruned(family: str, out: Path) -> Path:
    model, tok = tiny_model(family, hidden_size=128, head_dim=32, num_attention_heads=4, num_key_value_heads=2)
    shape = ModelShape.from_config(model.config)
    # no KV groups: OLMoE refuses them (q/k norm over all heads); vLLM 0.32's Qwen2-MoE derives head_dim
    # as hidden_size / heads, ignoring config.head_dim, so it cannot load a Qwen2-MoE with fewer heads
    kv = 0 if shape.qk_norm_full or family == "qwen2_moe" else 1
    spec = StepSpec(experts=2, expert_neurons=8, layer_ids=[2], kv_groups=kv,  # qwen*_moe keep a dense layer
                    shared_expert_neurons=16 if shape.shared_expert_intermediate_size else 0)
    prune_step(model, spec, calibration_batches(tok, PROMPTS * 2), progress=False)
    save_checkpoint(model, tok, out)
    return out


def test_vllm_loads_every_pruned_moe_family_as_written(tmp_path):
    from prunetune.tasks.vllm_backend import run_jobs

    _vllm_python()
    dirs = {f: _pruned(f, tmp_path / f) for f in MOE_FAMILIES}
    jobs = [{"model": str(d), "mode": "prompt_logprobs", "prompts": PROMPTS, "max_model_len": 256} for d in dirs.values()]
    results = run_jobs(jobs, timeout=1800)
    worst, errors = {}, {}
    for (name, d), res in zip(dirs.items(), results):
        if "error" in res:
            errors[name] = res["error"].splitlines()[-1][:300]
            continue
        worst[name] = max((_hf_logprobs(d, ids) - torch.tensor(lp)).abs().max().item()
                          for ids, lp in zip(res["token_ids"], res["logprobs"]))
    print("max |log-prob difference| vLLM vs transformers:", {k: f"{v:.2e}" for k, v in worst.items()}, errors)
    assert not errors, errors
    assert all(v < TOLERANCE for v in worst.values()), worst
