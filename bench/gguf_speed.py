"""SmolLM2-135M-Instruct dense and pruned to ~50% of its non-embedding parameters, exported to GGUF
(`prunetune export`), decoding at batch 1 in llama.cpp on this CPU (issue 28).

Each model is exported at f16 and q8_0; then greedy decode tokens/s at batch 1 (llama.cpp through the
GGUF venv's llama-cpp-python, the prompt evaluated first and not timed, best of 3 repeats; dense and
pruned interleaved over --rounds rounds, since the machine is shared). The bytes-read limit is the
memory bandwidth (a numpy copy of a 256 MiB array in this process, read + write bytes over the best of
5 copies) over the GGUF file's size: a decoded token reads every weight once, the tied embedding
matrix included (it is the output layer). Reported: tokens/s, pruned over dense at the same outtype,
and the share of the bytes-read limit.

    .venv/bin/python bench/gguf_speed.py --dense models/smollm2-135m-instruct \\
        --pruned runs/bench_smollm2_budget/seed_0/one_shot__seqkd_distill/final
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

try:
    from bench.common import ROOT, command_footer, torch_machine, write_page
except ImportError:  # run as `python bench/gguf_speed.py`
    from common import ROOT, command_footer, torch_machine, write_page

OUTTYPES = ("f16", "q8_0")


def bandwidth_gbs(mib: int = 256, repeats: int = 5) -> float:
    """Read + write GB/s of the best of `repeats` copies of a `mib` MiB array."""
    import numpy as np

    a = np.ones(mib * 2**20 // 8)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best / 1e9


def export_all(models: dict[str, str], work: Path) -> dict[tuple[str, str], dict]:
    from prunetune.export.gguf_export import export_gguf

    files = {}
    for name, path in models.items():
        for outtype in OUTTYPES:
            out = work / f"{name}.{outtype}.gguf"
            if out.is_file():
                from prunetune.export.gguf_export import tensor_types

                files[name, outtype] = {"path": str(out), "bytes": out.stat().st_size, "arch": tensor_types(out)[0]}
            else:
                files[name, outtype] = export_gguf(path, out, outtype, log=None)
    return files


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dense", required=True)
    p.add_argument("--pruned", required=True)
    p.add_argument("--work", default=str(ROOT / "bench" / "work" / "gguf_speed"))
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "gguf_speed"))
    args = p.parse_args(argv)

    from prunetune.checkpoint import count_params, load_model
    from prunetune.export.gguf_export import run_worker

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    models = {"dense": args.dense, "pruned": args.pruned}
    params = {}
    for name, path in models.items():
        m, tok = load_model(path, "float32")
        params[name] = count_params(m)
        prompt = tok("Question: What is 7 times 8? Answer:")["input_ids"]
        del m
    files = export_all(models, work)
    bw = bandwidth_gbs()
    speeds: dict[tuple[str, str], list[float]] = {k: [] for k in files}
    for _ in range(args.rounds):
        keys = list(files)
        jobs = [{"op": "decode_speed", "model": files[k]["path"], "prompt": prompt, "new_tokens": args.new_tokens,
                 "repeats": 3, "threads": args.threads} for k in keys]
        for k, res in zip(keys, run_worker(jobs)):
            if "error" in res:
                raise SystemExit(f"{k}: {res['error']}")
            speeds[k].append(res["tokens_per_s"])
    rows = []
    for (name, outtype), f in files.items():
        tps = max(speeds[name, outtype])
        limit = bw * 1e9 / f["bytes"]
        dense_tps = max(speeds["dense", outtype])
        rows.append({"model": name, "outtype": outtype, "bytes": f["bytes"], "tokens_per_s": round(tps, 1),
                     "tokens_per_s_median": round(statistics.median(speeds[name, outtype]), 1),
                     "vs_dense": round(tps / dense_tps, 3), "bytes_read_limit": round(limit, 1),
                     "of_limit": round(tps / limit, 3), **params[name]})
    command = ".venv/bin/python bench/gguf_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    res = {"rows": rows, "bandwidth_gbs": round(bw, 2), "new_tokens": args.new_tokens, "rounds": args.rounds,
           "threads": args.threads, "machine": torch_machine(), "command": command}
    lines = ["# gguf_speed: SmolLM2-135M-Instruct dense vs ~50% pruned, GGUF in llama.cpp, batch-1 decode", "",
             f"Memory bandwidth (numpy copy, read + write): {bw:.2f} GB/s. Decode: {args.new_tokens} greedy tokens "
             f"after a short prompt, {args.threads} threads, best of 3 repeats x {args.rounds} interleaved rounds.", "",
             "| model | outtype | params | non-emb params | GGUF MB | tok/s (best) | tok/s (median) | vs dense | bytes-read limit tok/s | of limit |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['outtype']} | {r['params']:,} | {r['non_embedding_params']:,} | "
                     f"{r['bytes'] / 1e6:.1f} | {r['tokens_per_s']} | {r['tokens_per_s_median']} | {r['vs_dense']:.2f}x | "
                     f"{r['bytes_read_limit']} | {r['of_limit']:.0%} |")
    lines += command_footer(command, res["machine"])
    write_page(args.out, res, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
