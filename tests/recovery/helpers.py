"""Shared tiny data and checks for the recovery tests."""

from __future__ import annotations

import torch

MEMO = [
    {"question": f"What is {a} plus {b}?", "answer": f"{a} + {b} = {a + b}. #### {a + b}"}
    for a, b in [(3, 4), (12, 7), (25, 30), (8, 9), (41, 2), (6, 6), (19, 23), (50, 11)]
]
TEMPLATE = "Question: {question}\nAnswer: {answer}"
PAIRS = [{"prompt": f"Question: {r['question']}\nAnswer:", "completion": " " + r["answer"]} for r in MEMO]


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def changed(before: dict, model) -> set[str]:
    after = model.state_dict()
    return {k for k, v in before.items() if not torch.equal(v, after[k])}


@torch.no_grad()
def lm_loss(model, tokenizer, texts: list[str]) -> float:
    """Mean next-token loss over whole texts (each text separately, EOS appended)."""
    model.eval()
    losses = []
    for t in texts:
        ids = torch.tensor([tokenizer(t)["input_ids"] + [tokenizer.eos_token_id]])
        losses.append(model(input_ids=ids, labels=ids).loss.item())
    return sum(losses) / len(losses)


@torch.no_grad()
def completion_loss(model, tokenizer, pairs: list[dict]) -> float:
    """Mean loss on completion tokens only, the quantity sft minimises."""
    model.eval()
    losses = []
    for p in pairs:
        pi = tokenizer(p["prompt"])["input_ids"]
        ci = tokenizer(p["completion"])["input_ids"] + [tokenizer.eos_token_id]
        ids = torch.tensor([pi + ci])
        labels = torch.tensor([[-100] * len(pi) + ci])
        losses.append(model(input_ids=ids, labels=labels).loss.item())
    return sum(losses) / len(losses)
