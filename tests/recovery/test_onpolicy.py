"""On-policy distillation (TRL's DistillationTrainer): the student's KL to the teacher on its own samples falls."""

import pytest
import torch
import torch.nn.functional as F

from prunetune.builtin.tiny import tiny_model
from prunetune.errors import UserError
from prunetune.recovery import recover
from tests.recovery.helpers import changed, snapshot

PROMPTS = [{"prompt": f"Q: {a} plus {b}?"} for a in range(4) for b in range(4)]


@torch.no_grad()
def reverse_kl_on_own_samples(student, teacher, tok, n_new: int = 8) -> float:
    """Mean per-token KL(student || teacher) on completions the student samples (seeded) to the prompts."""
    student.eval()
    torch.manual_seed(0)
    total, count = 0.0, 0
    for rec in PROMPTS:
        enc = tok(rec["prompt"], return_tensors="pt")
        out = student.generate(**enc, do_sample=True, max_new_tokens=n_new, top_k=0, pad_token_id=tok.pad_token_id)
        n = enc["input_ids"].shape[1]
        s = F.log_softmax(student(out).logits[0, n - 1 : -1].float(), -1)
        t = F.log_softmax(teacher(out).logits[0, n - 1 : -1].float(), -1)
        total += (s.exp() * (s - t)).sum().item()
        count += s.shape[0]
    return total / count


def test_onpolicy_lowers_the_students_kl_to_the_teacher_and_leaves_the_teacher_alone(tmp_path):
    teacher, tok = tiny_model("llama", seed=1)
    model, _ = tiny_model("llama", seed=2)
    t_snap, side = snapshot(teacher), tok.padding_side
    before = reverse_kl_on_own_samples(model, teacher, tok)
    res = recover(model, tok, "onpolicy", PROMPTS,
                  {"max_steps": 20, "learning_rate": 3e-3, "warmup_ratio": 0.0, "max_completion_length": 8,
                   "per_device_train_batch_size": 4, "beta": 1.0},
                  teacher=teacher, work_dir=tmp_path, metrics_path=tmp_path / "m.jsonl", progress=False)
    after = reverse_kl_on_own_samples(model, teacher, tok)
    assert res.steps == 20 and len(res.metrics) == 20 and res.tokens_seen > 0
    assert after < 0.5 * before, (before, after)
    assert changed(t_snap, teacher) == set()
    assert tok.padding_side == side  # put back after the trainer's left padding


def test_onpolicy_needs_a_teacher_and_prompts(tmp_path):
    model, tok = tiny_model("llama")
    with pytest.raises(UserError, match="teacher"):
        recover(model, tok, "onpolicy", PROMPTS, {"max_steps": 1}, work_dir=tmp_path, progress=False)
    with pytest.raises(UserError, match="no field 'prompt'"):
        recover(model, tok, "onpolicy", [{"text": "x"}], {"max_steps": 1}, teacher=tiny_model("llama")[0],
                work_dir=tmp_path, progress=False)
