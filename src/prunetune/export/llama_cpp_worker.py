"""llama.cpp jobs in the GGUF venv (`make gguf-env`), run as `python llama_cpp_worker.py REQUEST RESULT`.

Imports nothing from prunetune: it runs where llama-cpp-python is installed. REQUEST is {"jobs": [...]}:
  {"op": "quantize", "input": F32.gguf, "output": OUT.gguf, "type": "q4_k_m"}
  {"op": "score", "model": F.gguf, "prompts": [[token ids], ...], "new_tokens": N}
      -> per prompt the log-prob of each token after the first, and N greedy tokens after the prompt
  {"op": "decode_speed", "model": F.gguf, "prompt": [ids], "new_tokens": N, "repeats": R, "threads": T}
      -> greedy decode tokens/s at batch 1 (the prompt evaluated first, not timed), best of R
A failing job gives {"error": "..."} in its place.
"""

import json
import sys
import time

import llama_cpp
import numpy as np


def quantize(job):
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{job['type'].upper()}")
    rc = llama_cpp.llama_model_quantize(job["input"].encode(), job["output"].encode(), params)
    return {"ok": True} if rc == 0 else {"error": f"llama_model_quantize returned {rc}"}


def _load(path, n_ctx=512, threads=2):
    return llama_cpp.Llama(model_path=path, n_ctx=n_ctx, logits_all=True, n_threads=threads, n_batch=n_ctx,
                           verbose=False, seed=0)


def _log_softmax(x):
    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def score(job):
    llm = _load(job["model"], threads=job.get("threads", 2))
    out = []
    for ids in job["prompts"]:
        llm.reset()
        llm.eval(ids)
        lp = _log_softmax(np.array(llm.scores[: len(ids) - 1]))
        logprobs = lp[np.arange(len(ids) - 1), ids[1:]].tolist()
        greedy = []
        for _ in range(job.get("new_tokens", 0)):
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            greedy.append(tok)
            llm.eval([tok])
        out.append({"logprobs": logprobs, "greedy": greedy})
    return {"prompts": out, "n_vocab": llm.n_vocab()}


def decode_speed(job):
    llm = _load(job["model"], n_ctx=len(job["prompt"]) + job["new_tokens"] + 8, threads=job.get("threads", 2))
    best = 0.0
    for _ in range(job.get("repeats", 3)):
        llm.reset()
        llm.eval(job["prompt"])
        t = time.perf_counter()
        for _ in range(job["new_tokens"]):
            llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
        best = max(best, job["new_tokens"] / (time.perf_counter() - t))
    return {"tokens_per_s": best}


OPS = {"quantize": quantize, "score": score, "decode_speed": decode_speed}


def main(req, res):
    jobs = json.load(open(req))["jobs"]
    results = []
    for job in jobs:
        try:
            results.append(OPS[job["op"]](job))
        except Exception as e:  # noqa: BLE001 - reported per job, the caller decides
            results.append({"error": f"{type(e).__name__}: {e}"})
    with open(res, "w") as f:
        json.dump({"results": results}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
