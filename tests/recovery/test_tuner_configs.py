import pytest

from prunetune.config import parse_overrides
from prunetune.errors import UserError
from prunetune.recovery import TUNERS, config_keys, resolve_config


def test_every_tuner_documents_its_keys():
    for method in TUNERS:
        keys = config_keys(method)
        assert {"max_steps", "learning_rate", "per_device_train_batch_size", "seed"} <= set(keys)
        assert all(isinstance(h, str) and h for h in keys.values())
    assert {"temperature", "alpha", "teacher_dtype", "lora"} <= set(config_keys("distill"))
    assert {"num_generations", "max_completion_length", "beta"} <= set(config_keys("grpo"))
    assert resolve_config("grpo", {}).num_generations == 8 and resolve_config("grpo", {}).temperature == 1.0


def test_unknown_key_names_it_with_did_you_mean():
    with pytest.raises(
        UserError, match=r"unknown key 'config.learning_rat'.*did you mean 'learning_rate'"
    ):
        resolve_config("cpt", {"learning_rat": 1e-3})
    with pytest.raises(UserError, match=r"unknown key 'config.lora.rank'"):
        resolve_config("sft", {"lora": {"rank": 8}})
    with pytest.raises(UserError, match=r"unknown recovery method 'sfft'.*'sft'"):
        config_keys("sfft")
    with pytest.raises(UserError, match="max_steps"):
        resolve_config("cpt", {"max_steps": 0})
    with pytest.raises(UserError, match="lr_scheduler_type"):
        resolve_config("cpt", {"lr_scheduler_type": "polynomial"})


def test_lora_defaults_and_learning_rate():
    from dataclasses import asdict

    cfg = resolve_config("cpt", {"lora": {"r": 4}})
    assert asdict(cfg.lora) == {"r": 4, "alpha": 16, "target_modules": "all-linear", "dropout": 0.0}
    assert cfg.learning_rate == 2e-4
    assert resolve_config("cpt", {"lora": {"r": 4}, "learning_rate": 1e-3}).learning_rate == 1e-3


def test_overrides_are_typed_by_the_key_they_set_and_nest():
    got = resolve_config(
        "cpt",
        parse_overrides(
            ["max_steps=40", "learning_rate=1e-3", "lora.r=8", "lora.target_modules=[q_proj]", "template=Q: {q}"]
        ),
    )
    assert (got.max_steps, got.learning_rate, got.template) == (40, 1e-3, "Q: {q}")
    assert (got.lora.r, got.lora.target_modules) == (8, ["q_proj"])
    with pytest.raises(UserError, match="config.max_steps: expected an integer, got 'many'"):
        resolve_config("cpt", parse_overrides(["max_steps=many"]))
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["max_steps"])


def test_grpo_vllm_rollout_keys_validate_and_reach_trl(monkeypatch):
    import importlib.util

    cfg = resolve_config("grpo", {})
    assert cfg.use_vllm is False and cfg.trl_vllm_settings() == {}
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    from prunetune.recovery import check_environment

    cfg = resolve_config("grpo", {"use_vllm": True})  # a recipe for a GPU cluster validates anywhere
    with pytest.raises(UserError, match=r"use_vllm: .*prunetune\[vllm\]"):
        check_environment(cfg)  # a run without vLLM stops here, before any weight loads
    with pytest.raises(UserError, match="vllm_mode: must be one of colocate, server"):
        resolve_config("grpo", {"vllm_mode": "remote"})
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real(name, *a))
    settings = resolve_config("grpo", {"use_vllm": True, "vllm_mode": "server", "vllm_server_port": 8123}).trl_vllm_settings()
    from trl import GRPOConfig

    assert {"use_vllm", "vllm_mode", "vllm_server_port"} <= set(settings)
    assert all(hasattr(GRPOConfig, k) or k in GRPOConfig.__dataclass_fields__ for k in settings)  # names TRL knows


def test_colocated_vllm_starts_from_the_model_as_cut_not_the_checkpoint_it_was_loaded_from(tmp_path):
    """TRL's colocated vLLM builds its engine from model.name_or_path, then only copies weights in: after a
    cut, that path must hold the cut shapes (the loaded checkpoint is the dense model)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from prunetune.builtin.tokenizer import tiny_tokenizer
    from prunetune.pruning.plan import PruningPlan
    from prunetune.pruning.surgery import apply_plan
    from prunetune.recovery.grpo import point_vllm_at_current_shape

    cfg = AutoConfig.for_model("llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, vocab_size=320)
    model = AutoModelForCausalLM.from_config(cfg)
    model.name_or_path = model.config.name_or_path = "dense-checkpoint"
    apply_plan(model, PruningPlan(mlp_neurons={0: list(range(16)), 1: list(range(16))}))
    path = point_vllm_at_current_shape(model, tiny_tokenizer(), tmp_path)
    assert model.name_or_path == model.config.name_or_path == str(path)
    assert AutoConfig.from_pretrained(path).intermediate_size == 48
