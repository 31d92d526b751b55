"""Batched generation for evaluation: left padding, KV cache, stop strings, and honest length accounting.

A thin layer over `model.generate` (which already does the KV cache, sampling and stop strings). It
adds what evaluation needs: prompts sorted by length so batches carry little padding (results come
back in input order), text cut at the first stop string, and for every completion the number of
generated tokens and whether it ran out of budget, so silent truncation shows up in the metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

DEFAULT_MAX_NEW_TOKENS = 512  # chain of thought cut at 256 tokens is a classic silent error


@dataclass
class Generation:
    text: str  # decoded completion, cut at the first stop string (the stop string removed)
    num_tokens: int  # tokens generated, up to and including EOS / the token completing a stop string
    truncated: bool  # hit max_new_tokens without EOS or a stop string
    seconds: float = field(default=0.0, compare=False)  # its share of its batch's wall time (by tokens): a
    # measurement, not part of what was generated (two equal generations may take different times)


def share_time(gens: list[Generation], seconds: float) -> None:
    """Spread the wall time of generating `gens` together over them by generated tokens (equal when none).

    Batched completions finish together, so no completion has a time of its own; the shares add up to the
    measured time, which is what seconds per solved problem (total time / solved) needs.
    """
    total = sum(g.num_tokens for g in gens)
    for g in gens:
        g.seconds = seconds * (g.num_tokens / total if total else 1 / len(gens))


def _eos_ids(model, tokenizer) -> list[int]:
    ids = getattr(model.generation_config, "eos_token_id", None)
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def cut_at_stop(text: str, stop: list[str] | None) -> tuple[str, bool]:
    """Text before the earliest stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop or [] if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _encode(tokenizer, prompts: list[str]) -> dict:
    # A chat template already starts with BOS; let the tokenizer add special tokens only to raw text.
    bos = tokenizer.bos_token
    add_special = not (bos and all(p.startswith(bos) for p in prompts))
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        return tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=add_special)
    finally:
        tokenizer.padding_side = side


def generation_config(
    model,
    tokenizer,
    *,
    max_new_tokens: int,
    do_sample: bool,
    temperature: float,
    top_p: float,
    stop: list[str] | None,
):
    """Explicit settings, so a checkpoint's generation_config.json cannot change an evaluation."""
    from transformers import GenerationConfig

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else _eos_ids(model, tokenizer)[0]
    kwargs = dict(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        pad_token_id=pad,
        eos_token_id=_eos_ids(model, tokenizer),
        use_cache=True,
    )
    if do_sample:
        kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
    if stop:
        kwargs["stop_strings"] = list(stop)
    return GenerationConfig(**kwargs)


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    batch_size: int = 16,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    stop: list[str] | None = None,
    seed: int = 0,
    progress: bool = False,
    backend: str = "hf",
    model_dir: str | None = None,
) -> list[Generation]:
    """Complete every prompt (already templated) and return results in the order of `prompts`.

    backend "vllm" generates with vLLM from `model_dir` (the same model, saved) in another process;
    the settings mean the same (greedy unless do_sample; stop strings cut; truncated = out of budget).
    """
    if not prompts:
        return []
    assert batch_size > 0 and max_new_tokens > 0
    if backend == "vllm":
        from prunetune.tasks import vllm_backend

        assert model_dir is not None, "the vllm backend generates from a checkpoint directory"
        outs, seconds = vllm_backend.generate(model_dir, prompts, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                     temperature=temperature, top_p=top_p, stop=stop, seed=seed,
                                     dtype=str(next(model.parameters()).dtype).replace("torch.", ""))
        gens = [Generation(o["text"], o["num_tokens"], o["finish_reason"] == "length") for o in outs]
        share_time(gens, seconds)
        return gens
    torch.manual_seed(seed)
    gen_cfg = generation_config(
        model,
        tokenizer,
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_p=top_p,
        stop=stop,
    )
    eos = set(gen_cfg.eos_token_id)
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])  # longest first: memory errors early
    results: list[Generation | None] = [None] * len(prompts)
    device = next(model.parameters()).device
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(prompts), desc="generate", unit="prompt", leave=False)
    for idx in batches:
        t0 = time.perf_counter()
        enc = {k: v.to(device) for k, v in _encode(tokenizer, [prompts[i] for i in idx]).items()}
        out = model.generate(**enc, generation_config=gen_cfg, tokenizer=tokenizer)
        new = out[:, enc["input_ids"].shape[1] :].tolist()
        seconds = time.perf_counter() - t0
        for i, ids in zip(idx, new):
            results[i] = _finish(ids, tokenizer, eos, gen_cfg.pad_token_id, max_new_tokens, stop)
        share_time([results[i] for i in idx], seconds)
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    return results  # type: ignore[return-value]


def _finish(ids: list[int], tokenizer, eos: set[int], pad: int, budget: int, stop) -> Generation:
    end = next((k + 1 for k, t in enumerate(ids) if t in eos), None)
    hit_eos = end is not None
    if end is None:  # stopped by a stop string (then padded) or by the budget
        end = len(ids)
        if pad not in eos:
            while end > 0 and ids[end - 1] == pad:
                end -= 1
    text = tokenizer.decode(ids[:end], skip_special_tokens=True)
    text, hit_stop = cut_at_stop(text, stop)
    truncated = not hit_eos and not hit_stop and end >= budget
    return Generation(text=text, num_tokens=end, truncated=truncated)
