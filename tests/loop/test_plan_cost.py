"""A recipe priced per iteration: tokens from its recovery config, and `prunetune plan --gpus --gpu` output."""

import pytest

from prunetune.loop.cost import GPUS, PROMPT_TOKENS, TRAIN_MFU, Assumptions, train_flops_per_token
from prunetune.loop.plan_cost import iteration_costs
from prunetune.loop.planner import validate_recipe
from prunetune.loop.recipe import load_recipe
from tests.conftest import run_cli


def _costs(name, gpus, *overrides, **assumed):
    recipe = load_recipe(name, list(overrides))
    _, _, shapes = validate_recipe(recipe)
    return recipe, shapes, iteration_costs(recipe, shapes, gpus, GPUS["h200"], Assumptions(**assumed))


def test_grpo_tokens_follow_steps_batch_and_ranks():
    _, _, costs = _costs("paper-qwen2.5-7b-grpo", 8)
    seqs = 280 * 8 * 8 * 8  # max_steps x per-device batch x accumulation x ranks
    assert costs[1].train_tokens == seqs * (PROMPT_TOKENS + 3072)
    assert costs[1].rollout_tokens == seqs * 3072
    _, _, half = _costs("paper-qwen2.5-7b-grpo", 8, gen_fill=0.5)
    assert half[1].rollout_tokens == seqs * 1536 and half[1].rollout_gpu_h < costs[1].rollout_gpu_h / 1.9
    _, _, on16 = _costs("paper-qwen2.5-7b-grpo", 16)
    assert on16[1].train_tokens == 2 * costs[1].train_tokens  # max_steps was set for 8 GPUs


def test_one_pass_cpt_hours_by_hand_and_independent_of_ranks():
    recipe, shapes, costs = _costs("paper-llama3-8b-cpt", 8, "recovery.config.gradient_checkpointing=false")
    tokens = 100_000 * 512  # chunk_size x tokens per record (max_length by default)
    assert costs[1].train_tokens == tokens
    hours = tokens * train_flops_per_token(shapes[1], 512) / (989e12 * TRAIN_MFU) / 3600
    assert costs[1].train_gpu_h == pytest.approx(hours)
    _, _, on32 = _costs("paper-llama3-8b-cpt", 32, "recovery.config.gradient_checkpointing=false")
    assert on32[1].train_gpu_h == pytest.approx(hours)  # same work, more GPUs
    _, _, gc = _costs("paper-llama3-8b-cpt", 8)
    assert gc[1].train_gpu_h == pytest.approx(hours * 4 / 3)  # recomputation: one forward more
    assert costs[-1].train_gpu_h < costs[1].train_gpu_h  # later iterations train a smaller model


def test_plan_prints_gpu_hours_and_memory_for_a_paper_recipe(capsys):
    assert run_cli("plan", "paper-qwen2.5-7b-grpo", "--gpus", "8", "--gpu", "h200") == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "cost on 8 x H200 SXM" in out and "sharding fsdp, cpu_offload, gradient_checkpointing" in out
    assert "train GPU-h" in out and "GPU GB" in out and "NO!" not in out and not captured.err
    total = next(line for line in out.splitlines() if line.startswith("total:"))
    assert " GPU-h = " in total and "h on 8 GPUs" in total and "rollouts" in total and "of 141 GB per GPU" in total


def test_a_plan_that_does_not_fit_is_flagged_and_strict_refuses_it(capsys):
    unsharded = ["recovery.config.sharding=none", "recovery.config.cpu_offload=false"]
    assert run_cli("plan", "paper-qwen2.5-7b-grpo", *unsharded, "--gpus", "8") == 0
    captured = capsys.readouterr()
    assert "NO!" in captured.out
    warning = captured.err.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning:") and "141 GB" in warning[0]
    assert run_cli("plan", "paper-qwen2.5-7b-grpo", *unsharded, "--gpus", "8", "--strict") == 2
    assert "--strict" in capsys.readouterr().err
    assert run_cli("plan", "paper-qwen2.5-7b-grpo", "--gpus", "8", "--strict") == 0  # the shipped plan fits


def test_plan_without_cost_flags_prints_no_cost(capsys):
    assert run_cli("plan", "smoke") == 0
    assert "GPU-h" not in capsys.readouterr().out
