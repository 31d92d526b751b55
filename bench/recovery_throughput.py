"""Recovery throughput: `cpt` through transformers Trainer vs a plain PyTorch loop, and `distill` overhead.

Each mode runs in a fresh subprocess (so its peak memory is its own) on the same random Llama, batch,
sequence length and AdamW; the modes alternate for `--rounds` rounds and the best round counts.
tokens/s excludes the first `--warmup` steps. Memory: VmRSS just before training and VmHWM (peak RSS,
the same high-water mark as resource.ru_maxrss) at the end, from /proc/self/status.

    .venv/bin/python bench/recovery_throughput.py            # writes bench/results/recovery_throughput.{md,json}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

try:
    from bench.common import cpu_name, peak_rss_mib, rss_mib, versions
except ImportError:  # run as `python bench/recovery_throughput.py`
    from common import cpu_name, peak_rss_mib, rss_mib, versions

MODEL = dict(
    hidden_size=384,
    intermediate_size=1024,
    num_hidden_layers=6,
    num_attention_heads=6,
    num_key_value_heads=2,
    head_dim=64,
    vocab_size=4096,
    max_position_embeddings=1024,
)


def _build(seed: int = 0):
    import torch
    from transformers import AutoModelForCausalLM

    from prunetune.builtin.tiny import tiny_config
    from prunetune.builtin.tokenizer import tiny_tokenizer

    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config("llama", **MODEL))
    return model, tok


def _records(n_tokens: int) -> list[dict]:
    out, i = [], 0
    while len(out) * 20 < n_tokens * 1.3:
        a, b = (i * 37) % 97, (i * 11) % 89
        out.append(
            {
                "text": f"Question: Tom has {a} apples and buys {b} more. Answer: {a} + {b} = {a + b}. #### {a + b}"
            }
        )
        i += 1
    return out


def child(mode: str, a) -> dict:
    import torch

    torch.set_num_threads(a.threads)
    model, tok = _build()
    n_steps = a.warmup + a.steps
    records = _records(n_steps * a.batch * a.seq_len)
    cfg = {
        "max_steps": n_steps,
        "max_length": a.seq_len,
        "per_device_train_batch_size": a.batch,
        "learning_rate": 1e-4,
        "lr_scheduler_type": "constant",
        "warmup_ratio": 0.0,
        "logging_steps": 1,
    }
    teacher = _build(seed=1)[0] if mode == "distill" else None
    rss0 = rss_mib()
    if mode == "plain":
        from prunetune.recovery.examples import pack_blocks, record_texts

        blocks = pack_blocks(tok, record_texts(records), a.seq_len)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
        model.train()
        times = []
        for s in range(n_steps):
            ids = torch.tensor([b["input_ids"] for b in blocks[s * a.batch : (s + 1) * a.batch]])
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            times.append(time.perf_counter())
        tps = a.steps * a.batch * a.seq_len / (times[-1] - times[a.warmup - 1])
    else:
        import tempfile

        from prunetune.recovery import recover

        with tempfile.TemporaryDirectory() as wd:
            res = recover(model, tok, mode, records, cfg, teacher=teacher, work_dir=wd, progress=False)
        m = res.metrics
        assert len(m) == n_steps, len(m)
        tps = (m[-1]["tokens"] - m[a.warmup - 1]["tokens"]) / (
            m[-1]["wall_time"] - m[a.warmup - 1]["wall_time"]
        )
    return {
        "mode": mode,
        "tokens_per_s": tps,
        "rss_before_mb": rss0,
        "peak_rss_mb": peak_rss_mib(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default="bench/results/recovery_throughput")
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a)))
        return
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    runs: dict[str, list[dict]] = {"plain": [], "cpt": [], "distill": []}
    load_before = os.getloadavg()
    t0 = time.time()
    for _ in range(a.rounds):
        for mode in runs:
            argv = [sys.executable, __file__, "--child", mode] + [
                f"--{k.replace('_', '-')}={v}"
                for k, v in vars(a).items()
                if k not in ("child", "out", "rounds")
            ]
            line = subprocess.run(
                argv, env=env, capture_output=True, text=True, check=True
            ).stdout.splitlines()[-1]
            runs[mode].append(json.loads(line))
            print(mode, runs[mode][-1], flush=True)
    best = {m: max(r, key=lambda x: x["tokens_per_s"]) for m, r in runs.items()}
    result = {
        "command": "python bench/recovery_throughput.py " + " ".join(sys.argv[1:]),
        "model": {"family": "llama", **MODEL, "params": None},
        "batch": a.batch,
        "seq_len": a.seq_len,
        "steps_timed": a.steps,
        "warmup_steps": a.warmup,
        "threads": a.threads,
        "rounds": a.rounds,
        "runs": runs,
        "best": best,
        "cpt_over_plain": best["cpt"]["tokens_per_s"] / best["plain"]["tokens_per_s"],
        "distill_over_cpt_time": best["cpt"]["tokens_per_s"] / best["distill"]["tokens_per_s"],
        "versions": versions("python", "torch", "transformers", "trl", "peft"),
        "cpu": cpu_name() or platform.processor(),
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "wall_s": round(time.time() - t0, 1),
    }
    model, _ = _build()
    result["model"]["params"] = sum(p.numel() for p in model.parameters())
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(
        f"| {m} | {b['tokens_per_s']:.0f} | {b['rss_before_mb']:.0f} | {b['peak_rss_mb']:.0f} | "
        f"{b['peak_rss_mb'] - b['rss_before_mb']:.0f} |"
        for m, b in best.items()
    )
    md = f"""# Recovery throughput (cpt vs plain PyTorch, distill overhead)

Command: `{result["command"]}` ({result["wall_s"]} s)

Random Llama: hidden {MODEL["hidden_size"]}, {MODEL["num_hidden_layers"]} layers, MLP {MODEL["intermediate_size"]},
{MODEL["num_attention_heads"]} heads / {MODEL["num_key_value_heads"]} KV, vocab {MODEL["vocab_size"]},
{result["model"]["params"] / 1e6:.1f}M params, fp32. Batch {a.batch} x {a.seq_len} tokens, AdamW lr 1e-4, grad clip 1.0,
{a.steps} timed steps after {a.warmup} warm-up steps, {a.threads} threads; each mode in its own process,
{a.rounds} alternating rounds, best round shown. Memory from /proc/self/status: RSS before training
(model, teacher and data built) and VmHWM (peak RSS, = ru_maxrss) at the end.

| mode | tokens/s | RSS before (MB) | peak RSS (MB) | peak - before (MB) |
|---|---|---|---|---|
{rows}

- **cpt / plain = {result["cpt_over_plain"]:.2f}x** (target >= 0.9x)
- **distill step time / cpt step time = {result["distill_over_cpt_time"]:.2f}x** (the teacher's forward pass and a second full-vocab softmax)

All rounds: {json.dumps({m: [round(r["tokens_per_s"]) for r in rs] for m, rs in runs.items()})} tokens/s.

Machine: {result["cpu"]}, {result["cpu_count"]} cores shared with other jobs (load average
{load_before[0]:.1f} before, {result["loadavg_after"][0]:.1f} after), so absolute numbers are noisy; the
ratio is taken from the same run. Versions: {json.dumps(result["versions"])}.

Not measured here: the issue's SmolLM2-135M perplexity-after-recovery comparison (needs `prunetune import-gguf`).
"""
    out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
