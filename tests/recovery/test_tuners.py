"""Each tuner on a tiny model: it learns what it should, touches what it should, and stops on NaN."""

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from prunetune.builtin.tiny import tiny_config, tiny_model
from prunetune.errors import UserError
from prunetune.recovery import recover
from prunetune.recovery.examples import pair_examples
from tests.recovery.helpers import MEMO, PAIRS, TEMPLATE, changed, completion_loss, lm_loss, snapshot

FAST = {"learning_rate": 3e-3, "warmup_ratio": 0.0, "max_length": 32, "per_device_train_batch_size": 4}


def test_cpt_lowers_loss_on_a_memorisation_set(tmp_path):
    model, tok = tiny_model("llama")
    texts = [TEMPLATE.format(**r) for r in MEMO]
    before, snap = lm_loss(model, tok, texts), snapshot(model)
    res = recover(
        model,
        tok,
        "cpt",
        MEMO,
        {**FAST, "template": TEMPLATE, "max_steps": 30},
        work_dir=tmp_path,
        metrics_path=tmp_path / "m.jsonl",
        progress=False,
    )
    after = lm_loss(model, tok, texts)
    assert res.steps == 30 and len(res.metrics) == 30
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in res.metrics)
    assert after < 0.6 * before, (before, after)
    assert changed(snap, model) == set(snap)  # full fine-tune: every tensor moved
    m = res.metrics[-1]
    assert set(m) >= {"step", "loss", "tokens", "wall_time", "lr"} and m["tokens"] == res.tokens_seen
    assert (
        res.tokens_seen % 32 == 0 and 30 * 32 < res.tokens_seen <= 30 * 4 * 32
    )  # short last batch per epoch
    assert (tmp_path / "m.jsonl").read_text().count("\n") == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl"]  # Trainer wrote nothing in work_dir


def test_sft_masks_prompts_and_lowers_completion_loss(tmp_path):
    model, tok = tiny_model("qwen2")
    ex = pair_examples(
        tok,
        PAIRS[:1],
        prompt_field="prompt",
        completion_field="completion",
        messages_field="messages",
        max_length=64,
    )[0]
    n_prompt = len(tok(PAIRS[0]["prompt"])["input_ids"])
    assert (
        ex["labels"][:n_prompt] == [-100] * n_prompt and ex["labels"][n_prompt:] == ex["input_ids"][n_prompt:]
    )
    assert ex["input_ids"][-1] == tok.eos_token_id
    before = completion_loss(model, tok, PAIRS)
    res = recover(
        model,
        tok,
        "sft",
        PAIRS,
        {**FAST, "max_steps": 30, "max_length": 64},
        work_dir=tmp_path,
        progress=False,
    )
    assert completion_loss(model, tok, PAIRS) < 0.6 * before
    assert res.tokens_seen > 0 and res.steps == 30


def test_sft_uses_the_chat_template_when_there_is_one():
    _, tok = tiny_model("llama")
    tok.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
    )
    recs = [{"messages": [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "4"}]}]
    ex = pair_examples(
        tok,
        recs,
        prompt_field="prompt",
        completion_field="completion",
        messages_field="messages",
        max_length=64,
    )[0]
    text = tok.decode(ex["input_ids"])
    assert text.startswith("<s>user\n2 + 2?</s><s>assistant\n") and text.endswith("4</s>")
    trained = tok.decode([i for i, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab != -100])
    assert trained == "4</s>"


def test_distill_lowers_kl_and_leaves_the_teacher_alone(tmp_path):
    teacher, tok = tiny_model("llama", seed=1)
    model, _ = tiny_model("llama", seed=2)
    t_snap = snapshot(teacher)
    res = recover(
        model,
        tok,
        "distill",
        MEMO,
        {**FAST, "template": TEMPLATE, "max_steps": 30, "temperature": 1.0},
        teacher=teacher,
        work_dir=tmp_path,
        progress=False,
    )
    kls = [m["kl"] for m in res.metrics]
    assert len(kls) == 30 and sum(kls[-3:]) < 0.5 * sum(kls[:3]), kls
    assert changed(t_snap, teacher) == set()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


def test_distill_rejects_a_teacher_with_another_vocabulary(tmp_path):
    model, tok = tiny_model("llama")
    other = AutoModelForCausalLM.from_config(tiny_config("llama", vocab_size=len(tok) + 8))
    with pytest.raises(UserError, match="vocabulary size"):
        recover(
            model,
            tok,
            "distill",
            MEMO,
            {"template": TEMPLATE, "max_length": 32},
            teacher=other,
            work_dir=tmp_path,
            progress=False,
        )


def digit_reward(prompts, completions, **columns) -> list[float]:
    """Fraction of digit characters: a random tiny model emits ~2%, easy to push up."""
    assert columns["tag"] and len(columns["tag"]) == len(completions)  # extra columns reach the reward
    return [sum(c.isdigit() for c in x) / max(1, len(x)) for x in completions]


@torch.no_grad()
def sampled_reward(model, tok, n=48):
    torch.manual_seed(123)
    enc = tok(["Q:"] * n, return_tensors="pt")
    out = model.generate(**enc, do_sample=True, max_new_tokens=8, pad_token_id=tok.pad_token_id)
    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return sum(digit_reward(None, texts, tag=texts)) / n


def test_grpo_raises_mean_reward(tmp_path):
    model, tok = tiny_model("llama")
    before, snap = sampled_reward(model, tok), snapshot(model)
    cfg = {
        "max_steps": 8,
        "max_completion_length": 8,
        "learning_rate": 1e-2,
        "per_device_train_batch_size": 8,
        "warmup_ratio": 0.0,
        "lr_scheduler_type": "constant",
        "beta": 0.01,
    }
    res = recover(
        model,
        tok,
        "grpo",
        [{"prompt": "Q:", "tag": "x"}, {"prompt": "A:", "tag": "y"}],
        cfg,
        reward_funcs=digit_reward,
        work_dir=tmp_path,
        progress=False,
    )
    after = sampled_reward(model, tok)
    assert after > max(0.06, 2 * before), (before, after)
    assert all("reward" in m and "kl" in m for m in res.metrics) and res.steps == 8
    assert all(0.0 <= m["frac_reward_zero_std"] <= 1.0 for m in res.metrics)
    assert changed(snap, model)
    assert float(res.optimizer_state["model.norm.weight"]["step"]) == 8


@pytest.mark.slow
def test_grpo_trains_with_gradient_checkpointing(tmp_path):
    """The paper's GRPO setup recomputes activations; TRL turns checkpointing off around generation."""
    model, tok = tiny_model("llama")
    snap = snapshot(model)
    cfg = {"max_steps": 2, "max_completion_length": 8, "per_device_train_batch_size": 8, "learning_rate": 1e-2,
           "beta": 0.01, "gradient_checkpointing": True}
    res = recover(model, tok, "grpo", [{"prompt": "Q:", "tag": "x"}, {"prompt": "A:", "tag": "y"}], cfg,
                  reward_funcs=digit_reward, work_dir=tmp_path, progress=False)
    assert res.steps == 2 and changed(snap, model)


def test_lora_merges_into_a_stock_checkpoint(tmp_path):
    model, tok = tiny_model("llama")
    base_keys, snap = set(model.state_dict()), snapshot(model)
    res = recover(
        model,
        tok,
        "sft",
        PAIRS,
        {**FAST, "max_steps": 3, "lora": {"r": 4, "target_modules": ["q_proj", "up_proj"]}},
        work_dir=tmp_path / "w",
        progress=False,
    )
    assert res.model is model and res.optimizer_state is None
    assert set(model.state_dict()) == base_keys
    moved = changed(snap, model)
    assert moved and all(k.endswith(("q_proj.weight", "up_proj.weight")) for k in moved)
    assert all(p.requires_grad for p in model.parameters())  # trainable again for the next step
    model.save_pretrained(tmp_path / "ckpt")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt")
    assert set(reloaded.state_dict()) == base_keys
    ids = torch.tensor([tok("Question: What is 3 plus 4?")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, reloaded(ids).logits, atol=1e-5)


@pytest.mark.parametrize("method", ["cpt", "distill"])
def test_nan_loss_stops_with_a_user_error(tmp_path, method):
    model, tok = tiny_model("llama")
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[0, 0] = float("nan")
    teacher = copy.deepcopy(tiny_model("llama")[0]) if method == "distill" else None
    with pytest.raises(UserError, match="loss is nan at step 1"):
        recover(
            model,
            tok,
            method,
            MEMO,
            {"template": TEMPLATE, "max_length": 32, "max_steps": 3},
            teacher=teacher,
            work_dir=tmp_path,
            progress=False,
        )


def test_distill_on_completions_with_lora_and_bf16_teacher(tmp_path):
    teacher, tok = tiny_model("llama", seed=1)
    model, _ = tiny_model("llama", seed=2)
    base_keys = set(model.state_dict())
    cfg = {
        **FAST,
        "max_length": 64,
        "max_steps": 3,
        "format": "prompt_completion",
        "alpha": 0.5,
        "teacher_dtype": "bfloat16",
        "lora": {"r": 4},
    }
    res = recover(model, tok, "distill", PAIRS, cfg, teacher=teacher, work_dir=tmp_path, progress=False)
    assert teacher.dtype == torch.bfloat16 and set(model.state_dict()) == base_keys
    assert len(res.metrics) == 3 and all(
        m["kl"] > 0 and torch.isfinite(torch.tensor(m["loss"])) for m in res.metrics
    )


def test_progress_is_a_bar_with_the_loss_not_a_dict_per_step(tmp_path, capfd):
    model, tok = tiny_model("llama")
    cfg = {**FAST, "template": TEMPLATE, "max_steps": 3, "logging_steps": 1}
    recover(model, tok, "cpt", MEMO, cfg, work_dir=tmp_path, progress=True)
    err = capfd.readouterr().err
    assert "loss=" in err and "3/3" in err  # tqdm bar with the loss as its postfix
    assert "{'loss'" not in err and "'learning_rate'" not in err  # transformers' per-log dict lines
    recover(model, tok, "cpt", MEMO, cfg, work_dir=tmp_path, progress=False)
    assert "loss=" not in capfd.readouterr().err
