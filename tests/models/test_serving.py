"""Checkpoints serving engines can load: KV-pruned Qwen2 written as an exactly equal Llama; width rules."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from prunetune.builtin.tiny import tiny_model
from prunetune.checkpoint import load_model, save_checkpoint
from prunetune.models.serving import serving_rewrite, width_issues
from prunetune.pruning.plan import PruningPlan
from prunetune.pruning.surgery import apply_plan


@pytest.mark.parametrize("tied", [False, True])
def test_kv_pruned_qwen2_is_written_as_an_equal_llama(tmp_path, tied):
    model, tok = tiny_model("qwen2", hidden_size=128, head_dim=32, tie_word_embeddings=tied)
    assert serving_rewrite(model) is None  # head_dim == hidden / heads: vLLM's Qwen2 loads it as it is
    with torch.no_grad():
        apply_plan(model, PruningPlan(kv_groups={i: [0] for i in range(4)}))
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11]])
    expected = model(ids).logits
    save_checkpoint(model, tok, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["head_dim"] == 32 and cfg["attention_bias"] is True
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    assert type(back).__name__ == "LlamaForCausalLM"
    assert torch.equal(back(ids).logits, expected)
    assert model.config.model_type == "qwen2"  # the model in memory is untouched
    again, _ = load_model(tmp_path / "m")  # and the written one prunes on as a Llama
    with torch.no_grad():
        apply_plan(again, PruningPlan(mlp_neurons={i: [0, 1] for i in range(4)}))
    assert again.config.intermediate_size == 94


def test_width_rules_for_sharding_and_4bit_kernels():
    assert width_issues(14336, 32, 8, 8) == []
    assert "not a multiple of 128" in width_issues(14784, 32, 8, 8)[0]  # 1848 per rank
    assert "do not split over 8 ranks" in width_issues(14336, 28, 4, 8)[0]
    assert "does not split" in width_issues(1000, 32, 8, 3)[1]


def test_kv_pruned_qwen2_whose_heads_do_not_divide_hidden_stays_a_loadable_qwen2(tmp_path):
    model, tok = tiny_model("qwen2", hidden_size=96, head_dim=32, num_attention_heads=6, num_key_value_heads=6)
    with torch.no_grad():
        apply_plan(model, PruningPlan(kv_groups={i: [0] for i in range(4)}))  # 5 heads: 96 % 5 != 0
    assert serving_rewrite(model) is None  # transformers' Llama config would reject hidden 96 with 5 heads
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    back = AutoModelForCausalLM.from_pretrained(save_checkpoint(model, tok, tmp_path / "m"))
    assert back.config.model_type == "qwen2" and torch.equal(back(ids).logits, model(ids).logits)
