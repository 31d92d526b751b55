"""The project-made reference reasoning model: a small Llama trained from scratch on `arith`, on CPU.

No model hub is reachable, so prunetune ships its own dense model to prune (assets/reference/, loaded
by the built-in name `reference`). `build` is the exact, seeded recipe that made it. The training loop
is a plain PyTorch AdamW loop rather than a Trainer: the model is tiny, the data is generated on the
fly and the loop must be bit-for-bit reproducible, which a dozen lines do more plainly.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from prunetune.builtin import arith

# The shipped shape: 6 layers with real MLP width (384) to prune and 2 KV groups.
MODEL_CONFIG = dict(
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=6,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=32,
    max_position_embeddings=256,
    tie_word_embeddings=True,
    rms_norm_eps=1e-5,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
VOCAB_SIZE = 512
DATA_OPTIONS = arith.DATA_OPTIONS
EVAL_SEED = 0  # held-out problems: arith test split, seed 0 (the same ones the `arith` task serves)
MAX_NEW_TOKENS = 96


def reference_dir() -> Path:
    """Where the shipped reference checkpoint lives (package data, tracked in git)."""
    return Path(__file__).resolve().parent / "assets" / "reference"


def build_tokenizer(seed: int = 0, n_texts: int = 4000):
    """A 512-token byte-level BPE (digits split one per token) trained on generated train problems."""
    from prunetune.builtin.tokenizer import train_bpe_tokenizer

    texts = [
        arith.format_text(r) for r in arith.generate_problems(n_texts, split="train", seed=10_000 + seed)
    ]
    return train_bpe_tokenizer(texts, vocab_size=VOCAB_SIZE)


def new_model(tokenizer, seed: int = 0, **overrides):
    """A randomly initialised LlamaForCausalLM of the reference shape (deterministic under `seed`)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), **{**MODEL_CONFIG, **overrides})
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # Eager attention: with padded batches on CPU it ran 2x faster than sdpa for this shape (measured).
    model.config._attn_implementation = "eager"
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def _encode(tokenizer, records: list[dict]) -> list[tuple[list[int], int]]:
    """Token ids of prompt + " answer" + EOS, and the prompt length (its tokens carry no loss)."""
    prompts = tokenizer([arith.prompt_text(r["question"]) for r in records])["input_ids"]
    answers = tokenizer([" " + r["answer"] for r in records])["input_ids"]
    return [(p + a + [tokenizer.eos_token_id], len(p)) for p, a in zip(prompts, answers)]


def _batch(encoded, pad_id: int):
    """Right-padded input ids with the loss on the answer only (prompt and padding labels are -100)."""
    from prunetune.data import IGNORE, right_pad

    ids = [e for e, _ in encoded]
    return right_pad(ids, pad_id, [[IGNORE] * n + e[n:] for e, n in encoded])


def length_bucketed(encoded: list, batch_size: int, window: int, seed: int) -> list:
    """Reorder `encoded` so each batch holds problems of similar length (less padding, same problems).

    Every `window` consecutive batches' worth of problems is sorted by length and cut into batches,
    and those batches are shuffled (seeded) so training does not see lengths in order. Without it a
    batch is padded to its longest problem: about a quarter of the tokens of a step were padding.
    """
    import random

    if window <= 1:
        return encoded
    rng = random.Random(seed)
    out = []
    span = window * batch_size
    for start in range(0, len(encoded), span):
        chunk = sorted(encoded[start : start + span], key=lambda e: len(e[0]))
        batches = [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        rng.shuffle(batches)
        out.extend(e for b in batches for e in b)
    return out


def exact_match(model, tokenizer, records: list[dict], *, batch_size: int = 64, progress: bool = False) -> float:
    """Share of `arith` records whose greedy completion ends in the right answer: the `arith` task's
    accuracy through the one evaluation path (`prunetune eval --tasks arith` scores the same way)."""
    from prunetune.builtin.arith_task import ArithTask
    from prunetune.tasks.evaluate import evaluate

    task = ArithTask()
    examples = [task.example(r) for r in records]
    was_training = model.training
    model.eval()
    try:
        result = evaluate(model, tokenizer, task, examples=examples, max_new_tokens=MAX_NEW_TOKENS,
                          batch_size=batch_size, progress=progress)
    finally:
        model.train(was_training)
    return result["metrics"]["accuracy"]


def build(
    out_dir: str | os.PathLike,
    *,
    steps: int = 3000,
    seed: int = 0,
    batch_size: int = 48,
    learning_rate: float = 3e-3,
    warmup_steps: int = 50,
    weight_decay: float = 0.01,
    eval_every: int = 400,
    eval_n: int = 200,
    final_eval_n: int = 1000,
    model_overrides: dict | None = None,
    progress: bool = True,
    device: str = "cpu",
    length_buckets: int = 0,
) -> dict:
    """Train the reference model from scratch and save it atomically to `out_dir`; returns the build card.

    Fully seeded: the same arguments give the same weights on the same torch build. Every
    `eval_every` steps exact match on `eval_n` held-out problems is logged (the plateau check); the
    final score uses `final_eval_n` held-out problems. `length_buckets` > 1 batches problems of
    similar length together within windows of that many batches (see `length_bucketed`).
    """
    import torch
    from tqdm.auto import tqdm

    from prunetune.checkpoint import count_params, save_checkpoint
    from prunetune.errors import UserError
    from prunetune.io import atomic_write_text, check_output_path
    from prunetune.recovery.schedule import make_optimizer

    out_dir = check_output_path(out_dir, "--out")
    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    t0 = time.time()
    tokenizer = build_tokenizer(seed)
    model = new_model(tokenizer, seed, **(model_overrides or {})).to(device)
    train = _encode(
        tokenizer, arith.generate_problems(steps * batch_size, split="train", seed=seed, **DATA_OPTIONS)
    )
    train = length_bucketed(train, batch_size, length_buckets, seed)
    held_out = arith.generate_problems(
        max(eval_n, final_eval_n), split="test", seed=EVAL_SEED, **DATA_OPTIONS
    )

    optimizer, _ = make_optimizer(model, lr=learning_rate, weight_decay=weight_decay, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:  # linear warm-up, cosine decay to 10% of the peak
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        frac = (step - warmup_steps) / max(1, steps - warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    trajectory, losses = [], []
    model.train()
    bar = tqdm(range(steps), disable=not progress, desc="reference build")
    for step in bar:
        batch = _batch(train[step * batch_size : (step + 1) * batch_size], tokenizer.pad_token_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if (step + 1) % 50 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / 50:.4f}")
        if eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
            acc = exact_match(model, tokenizer, held_out[:eval_n])
            trajectory.append(
                {
                    "step": step + 1,
                    "accuracy": acc,
                    "n": eval_n,
                    "loss": sum(losses[-50:]) / len(losses[-50:]),
                    "wall_time": time.time() - t0,
                }
            )
            bar.write(
                f"step {step + 1}: held-out exact match {acc:.3f} on {eval_n} (loss {trajectory[-1]['loss']:.4f})"
            )
    train_time = time.time() - t0
    model.eval()
    final = exact_match(model, tokenizer, held_out[:final_eval_n], progress=progress)
    trajectory.append(
        {
            "step": steps,
            "accuracy": final,
            "n": final_eval_n,
            "loss": sum(losses[-50:]) / len(losses[-50:]),
            "wall_time": time.time() - t0,
        }
    )
    card = {
        "accuracy": final,
        "eval_n": final_eval_n,
        "eval_split": "test",
        "eval_seed": EVAL_SEED,
        "steps": steps,
        "seed": seed,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "warmup_steps": warmup_steps,
        "weight_decay": weight_decay,
        "length_buckets": length_buckets,
        "data_options": DATA_OPTIONS,
        "model_config": {**MODEL_CONFIG, **(model_overrides or {}), "vocab_size": len(tokenizer)},
        **count_params(model),
        "train_wall_time_s": round(train_time, 1),
        "total_wall_time_s": round(time.time() - t0, 1),
        "torch_threads": torch.get_num_threads(),
        "trajectory": trajectory,
        "device": device,
        "command": f"prunetune reference build --out {out_dir} --steps {steps} --seed {seed}"
        + f" --batch-size {batch_size} --learning-rate {learning_rate} --warmup-steps {warmup_steps}"
        + (f" --length-buckets {length_buckets}" if length_buckets > 1 else "")
        + (f" --device {device}" if device != "cpu" else ""),
    }
    model.to("cpu")
    save_checkpoint(
        model,
        tokenizer,
        out_dir,
        history=[{"event": "reference_build", **card}],
        extra_json={"reference_build.json": card},
    )
    atomic_write_text(out_dir / "README.md", model_card(card))
    return card


def _where(card: dict) -> str:
    if card.get("device", "cpu") != "cpu":
        return f"one GPU ({card['device']})"
    return f"CPU with {card['torch_threads']} torch thread(s)"


def _buckets(card: dict) -> str:
    n = card.get("length_buckets", 0)
    return f", problems batched by length within windows of {n} batches" if n > 1 else ""


def model_card(card: dict) -> str:
    """A README for a built reference checkpoint: what it is, how well it does, how to rebuild it."""
    cfg = card["model_config"]
    rows = "\n".join(
        f"| {t['step']} | {t['accuracy']:.3f} | {t['n']} | {t['loss']:.4f} | {t['wall_time']:.0f} |"
        for t in card["trajectory"]
    )
    return f"""# prunetune reference model

A small Llama ({card["params"]:,} parameters, {card["non_embedding_params"]:,} non-embedding) trained from
scratch by `prunetune reference build` on generated `arith` word problems
({card["data_options"]["min_steps"]}-{card["data_options"]["max_steps"]} steps, numbers up to
{card["data_options"]["max_number"]}), with a byte-level BPE tokenizer ({cfg["vocab_size"]} tokens, digits split)
built in code. Prompt format: `Question: <question>\nAnswer:`; the answer is one equation per line, then
`#### <number>` and EOS.

Held-out exact match: **{card["accuracy"]:.3f}** on {card["eval_n"]} `arith` test problems (split "test",
seed {card["eval_seed"]}; greedy decoding).

Shape: hidden_size {cfg["hidden_size"]}, intermediate_size {cfg["intermediate_size"]},
num_hidden_layers {cfg["num_hidden_layers"]}, num_attention_heads {cfg["num_attention_heads"]},
num_key_value_heads {cfg["num_key_value_heads"]}, head_dim {cfg["head_dim"]}, tied embeddings.

Training: {card["steps"]} AdamW steps of {card["batch_size"]} problems (loss on the answer only), peak learning
rate {card["learning_rate"]}, {card["warmup_steps"]} warm-up steps then cosine decay to 10%, weight decay
{card["weight_decay"]}, seed {card["seed"]}{_buckets(card)}; {card["train_wall_time_s"]:.0f} s of training
({card["total_wall_time_s"]:.0f} s in all) on {_where(card)}.

Rebuild: `{card["command"]}`{" (a GPU build is not bit-identical to a CPU one)" if card.get("device", "cpu") != "cpu" else ""}

| step | exact match | problems | train loss | wall time (s) |
|---|---|---|---|---|
{rows}
"""
