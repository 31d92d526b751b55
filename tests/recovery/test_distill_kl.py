"""The memory-lean distillation loss equals the plain one (loss and gradients), on every family."""

import pytest
import torch

from prunetune.builtin.tiny import tiny_model
from prunetune.data import IGNORE
from prunetune.errors import UserError
from prunetune.models import get_adapter
from prunetune.recovery import recover, resolve_config
from prunetune.recovery.distill import distill_loss
from prunetune.recovery.distill_kl import chunked_distill_loss
from tests.recovery.helpers import MEMO, PAIRS, TEMPLATE, snapshot


def _inputs(vocab: int):
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (3, 13), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # a padded row
    labels = ids.masked_fill(mask == 0, IGNORE)
    labels[0, :4] = IGNORE  # a prompt without loss
    return {"input_ids": ids, "attention_mask": mask}, labels


def _loss_and_grads(model, loss_fn):
    model.zero_grad(set_to_none=True)
    loss, kl = loss_fn()
    loss.backward()
    return loss.detach(), kl, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_chunked_and_topk_vocab_equal_the_full_loss_and_gradients(family, alpha):
    model, _ = tiny_model(family, seed=2)
    teacher, _ = tiny_model(family, seed=1)
    teacher.requires_grad_(False)
    vocab = model.config.vocab_size
    feed, labels = _inputs(vocab)
    t_logits = teacher(**feed).logits
    adapter = get_adapter(model)

    def lean(**kw):
        def fn():
            hidden = model.get_decoder()(**feed)[0]
            return chunked_distill_loss(
                hidden, teacher.get_decoder()(**feed)[0], labels, temperature=2.0, alpha=alpha,
                student_head=lambda h: adapter.output_logits(model, h),
                teacher_head=lambda h: adapter.output_logits(teacher, h), **kw,
            )
        return fn

    full = _loss_and_grads(model, lambda: distill_loss(model(**feed).logits, t_logits, labels, 2.0, alpha))
    assert full[0] > 0 and len(full[2]) == len(list(model.parameters()))
    for kw in ({"chunk_size": 5}, {"chunk_size": 1000}, {"chunk_size": 7, "top_k": vocab}, {"top_k": vocab}):
        loss, kl, grads = _loss_and_grads(model, lean(**kw))
        torch.testing.assert_close(loss, full[0], rtol=1e-5, atol=1e-6, msg=str(kw))
        torch.testing.assert_close(kl, full[1], rtol=1e-5, atol=1e-6, msg=str(kw))
        assert grads.keys() == full[2].keys()
        for name, g in grads.items():
            torch.testing.assert_close(g, full[2][name], rtol=1e-4, atol=1e-6, msg=f"{kw} {name}")
    small = _loss_and_grads(model, lean(chunk_size=5, top_k=4))[1]
    assert torch.isfinite(small) and small != full[1]  # top-k < vocab is a different (sparser) target


def test_lean_distillation_trains_and_leaves_the_teacher_alone(tmp_path):
    teacher, tok = tiny_model("gemma2", seed=1)
    model, _ = tiny_model("gemma2", seed=2)
    t_snap = snapshot(teacher)
    cfg = {"learning_rate": 3e-3, "warmup_ratio": 0.0, "max_length": 32, "per_device_train_batch_size": 4,
           "template": TEMPLATE, "max_steps": 20, "temperature": 1.0, "chunk_size": 16, "top_k": 32}
    res = recover(model, tok, "distill", MEMO, cfg, teacher=teacher, work_dir=tmp_path, progress=False)
    kls = [m["kl"] for m in res.metrics]
    assert len(kls) == 20 and sum(kls[-3:]) < 0.8 * sum(kls[:3]), kls
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in t_snap.items())


@pytest.mark.parametrize("key, value, message", [
    ("chunk_size", 0, "chunk_size"), ("top_k", 0, "top_k"), ("top_k", -3, "top_k"),
])
def test_bad_chunk_size_or_top_k_names_the_key(key, value, message):
    with pytest.raises(UserError, match=message) as err:
        resolve_config("distill", {key: value})
    assert "\n" not in str(err.value)


def test_top_k_above_the_vocabulary_names_the_key(tmp_path):
    teacher, tok = tiny_model("llama", seed=1)
    model, _ = tiny_model("llama", seed=2)
    with pytest.raises(UserError, match=r"distill\.top_k: .* exceeds the vocabulary"):
        recover(model, tok, "distill", PAIRS, {"top_k": 10**6, "format": "prompt_completion"},
                teacher=teacher, work_dir=tmp_path, progress=False)
