"""Tokenizers built in code (no hub): a byte-level BPE with single-digit splitting, trained on given text."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS = "<pad>", "<s>", "</s>"


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE; digits are always split one per token, so arithmetic stays learnable."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS)
    fast.padding_side = "left"
    return fast


_TINY_CORPUS = [
    "Question: Tom has 3 apples and buys 5 more. How many apples does he have? "
    "Answer: 3 + 5 = 8. #### 8",
    "The quick brown fox jumps over the lazy dog. def add(a, b):\n    return a + b\n",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "import math\nprint(math.sqrt(16))\nfor i in range(10):\n    x = i * 2\n",
    "The answer is \\boxed{42}. Let's think step by step. 12 * 4 = 48, 48 / 2 = 24.",
]


def tiny_tokenizer(vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """A small deterministic tokenizer for tests and `tiny-random-*` models."""
    return train_bpe_tokenizer(_TINY_CORPUS * 4, vocab_size=vocab_size)
