"""calibration_batches: deterministic right-padded batches whose masks mark exactly the real tokens."""

import torch

from prunetune.builtin.tokenizer import tiny_tokenizer
from prunetune.pruning.importance import calibration_batches
from prunetune.pruning.importance.calibration import TokenMask


def test_batches_are_right_padded_truncated_and_deterministic():
    tok = tiny_tokenizer()
    texts = ["a long text about apples and numbers 1 2 3 4 5 6 7 8 9", "short", "x" * 500]
    batches = calibration_batches(tok, texts, max_length=16, batch_size=2)
    assert [b["input_ids"].shape[0] for b in batches] == [2, 1]
    first = batches[0]
    lengths = [len(tok(t, truncation=True, max_length=16)["input_ids"]) for t in texts[:2]]
    assert first["attention_mask"].sum(dim=1).tolist() == lengths
    assert first["input_ids"][1, lengths[1] :].eq(tok.pad_token_id).all()
    assert first["attention_mask"][1, : lengths[1]].eq(1).all()  # right padding: real tokens first
    assert batches[1]["input_ids"].shape[1] == 16  # truncated
    again = calibration_batches(tok, texts, max_length=16, batch_size=2)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(batches, again, strict=True))


def test_token_mask_last_token_for_right_and_left_padding():
    mask = TokenMask()
    mask.set(torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 1, 1]]))
    assert mask.last.tolist() == [2, 4, 11]
    assert mask.count == 6
    x = torch.arange(12, dtype=torch.float32)[:, None]
    assert mask.masked_sum(x).item() == 0 + 1 + 2 + 4 + 10 + 11
