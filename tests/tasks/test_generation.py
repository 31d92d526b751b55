import pytest
import torch

from prunetune.builtin.tiny import tiny_model
from prunetune.tasks.generation import cut_at_stop, generate

PROMPTS = [
    "Question: Tom has 3 apples",
    "def add(a, b):",
    "The quick brown fox jumps over the lazy dog. Natalia sold clips",
    "x",
    "import math\nprint(",
]


@pytest.fixture(scope="module")
def tiny():
    return tiny_model("llama", dtype=torch.float32)


def test_batched_greedy_equals_one_by_one(tiny):
    model, tok = tiny
    batched = generate(model, tok, PROMPTS, max_new_tokens=12, batch_size=3)  # mixed lengths, left padding
    single = [generate(model, tok, [p], max_new_tokens=12, batch_size=1)[0] for p in PROMPTS]
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.num_tokens for g in batched] == [g.num_tokens for g in single]
    assert all(g.num_tokens == 12 and g.truncated for g in batched)  # a random model never emits EOS here


def test_order_restored_and_stop_strings_cut(tiny):
    model, tok = tiny
    full = generate(model, tok, PROMPTS, max_new_tokens=10, batch_size=2)
    # pick a stop string from inside the first completion: it must be cut there and not count as truncated
    text = full[0].text
    stop = text[3:6] if len(text) >= 6 else text
    cut = generate(model, tok, PROMPTS, max_new_tokens=10, batch_size=2, stop=[stop])
    assert cut[0].text == text[: text.find(stop)]
    assert not cut[0].truncated and cut[0].num_tokens <= 10
    reversed_out = generate(model, tok, PROMPTS[::-1], max_new_tokens=10, batch_size=2)
    assert [g.text for g in reversed_out] == [g.text for g in full][::-1]


def test_sampling_is_seeded(tiny):
    model, tok = tiny
    a = generate(model, tok, PROMPTS[:2], max_new_tokens=8, do_sample=True, seed=3)
    b = generate(model, tok, PROMPTS[:2], max_new_tokens=8, do_sample=True, seed=3)
    g = generate(model, tok, PROMPTS[:2], max_new_tokens=8)
    assert a == b and [x.text for x in a] != [x.text for x in g]


def test_cut_at_stop_earliest():
    assert cut_at_stop("abc\nQuestion: x\n\n\n", ["\n\n\n", "\nQuestion:"]) == ("abc", True)
    assert cut_at_stop("abc", ["zz"]) == ("abc", False)
