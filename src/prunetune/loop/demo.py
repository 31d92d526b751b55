"""The one-command demo: the built-in reference model compacted gradually AND in one shot, side by side.

`prunetune demo` (what `make demo` runs) executes recipes/demo.yaml twice: as written (the Prune-Tune
Loop) and with `one_shot=true` (the paper's Prune-Once baseline: the same total cut and the same total
recovery budget in one step), then prints a before/after table and writes the report with both runs
on the accuracy-versus-parameters plot. The table gives each model's tokens per problem and seconds per
solved problem beside its accuracy: a pruned model that decodes faster but writes longer is no faster to an answer.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from prunetune.table import format_table

RECIPE = "demo"  # the shipped recipe (package data), found by name


@torch.no_grad()
def decode_tokens_per_second(model, tokenizer, *, new_tokens: int = 48, reps: int = 3) -> float:
    """Greedy batch-1 generate() speed on a fixed prompt (best of `reps`), forced to `new_tokens` tokens."""
    ids = tokenizer("Question: Tom has 12 apples and buys 7 more. How many apples?\nAnswer:", return_tensors="pt")
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
              pad_token_id=tokenizer.pad_token_id)
    model.generate(**ids, **{**kw, "max_new_tokens": 4, "min_new_tokens": 4})
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        model.generate(**ids, **kw)
        best = min(best, time.perf_counter() - t)
    return new_tokens / best


def _row(name: str, path, params: dict, metrics: dict, task: str) -> dict:
    from prunetune.checkpoint import load_model

    model, tok = load_model(path)
    m = metrics.get(task, {})
    return {"run": name, "params": params["params"], "non_embedding_params": params["non_embedding_params"],
            "accuracy": m.get("accuracy"), "mean_length": m.get("mean_length"),
            "seconds_per_solved": m.get("seconds_per_solved"), "decode_tps": decode_tokens_per_second(model, tok)}


def demo_table(rows: list[dict], task: str) -> str:
    """The before/after table: size, accuracy, tokens per problem, seconds per solved problem (total generation
    time of the run's evaluation / problems solved) and decode speed, each run against dense (rows[0])."""
    dense = rows[0]
    cells = []
    for r in rows:
        if r["params"] is None:
            cells.append([r["run"], "(stopped before its first iteration; see its summary.json)", *[""] * 8])
            continue
        rel = r["accuracy"] / dense["accuracy"] if dense["accuracy"] else float("nan")
        spp = r.get("seconds_per_solved")
        tokens = r.get("mean_length")
        cells.append([r["run"], f"{r['params']:,}", f"{r['non_embedding_params']:,}",
                      f"{r['non_embedding_params'] / dense['non_embedding_params']:.1%}", f"{r['accuracy']:.3f}",
                      f"{rel:.1%}", "-" if tokens is None else f"{tokens:.1f}", "-" if spp is None else f"{spp:.3f}",
                      f"{r['decode_tps']:.1f}", f"{r['decode_tps'] / dense['decode_tps']:.2f}x"])
    header = ["run", "params", "non-emb", "kept", f"{task} acc", "vs dense", "tok/problem", "s/solved",
              "decode tok/s", "speedup"]
    return format_table(header, cells, align="lrrrrrrrrr")


def run_demo(recipe_path: str | Path = RECIPE, overrides: list[str] | None = None, *, restart: bool = False,
             progress: bool = True) -> dict:
    from prunetune.loop import run
    from prunetune.loop.recipe import load_recipe
    from prunetune.loop.report import write_report

    overrides = list(overrides or [])
    gradual = load_recipe(recipe_path, overrides)
    oneshot = load_recipe(recipe_path, [*overrides, f"output_dir={gradual.output_dir}-oneshot", "one_shot=true"])
    t0 = time.time()
    s_one = run(oneshot, restart=restart, progress=progress)
    s_grad = run(gradual, restart=restart, progress=progress)
    task = gradual.gate.task or gradual.evaluation.tasks[0]
    rows = [_row("dense", gradual.model, s_grad["baseline"], s_grad["baseline"]["metrics"], task)]
    for name, s, out in (("gradual", s_grad, gradual.output_dir), ("one-shot", s_one, oneshot.output_dir)):
        if s["final"]:
            rows.append(_row(name, Path(out) / "final", s["final"], s["final"]["metrics"], task))
        else:
            rows.append({"run": name, "params": None, "non_embedding_params": None, "accuracy": None,
                         "mean_length": None, "seconds_per_solved": None, "decode_tps": None})
    write_report(gradual.output_dir, [oneshot.output_dir])
    write_report(oneshot.output_dir, [gradual.output_dir])
    print()
    print(demo_table(rows, task))
    print("s/solved: seconds of generation per solved problem in the run's own evaluation (total time / solved)")
    family = s_grad.get("family") or []
    if family:  # the frontier: the gradual run's family, and the one-shot model, against dense
        points = [[f"gradual {f['dir']}", f"{f['kept']:.1%}", f"{f['params']:,}", f"{f['metrics'][task]['accuracy']:.3f}"]
                  for f in family]
        if s_one["final"]:
            points.append(["one-shot", f"{s_one['non_embedding_params_kept']:.1%}", f"{s_one['final']['params']:,}",
                           f"{s_one['final']['metrics'][task]['accuracy']:.3f}"])
        print("\nfrontier (non-embedding parameters kept vs accuracy; `prunetune pick runs/demo --min-accuracy X`):")
        print(format_table(["model", "kept", "params", f"{task} acc"], points, align="lrrr"))
    print(f"\nreports: {gradual.output_dir}/report.md, {oneshot.output_dir}/report.md  ({time.time() - t0:.0f} s)")
    result = {"rows": rows, "task": task, "wall_time": time.time() - t0}
    from prunetune.io import atomic_write_json

    atomic_write_json(Path(gradual.output_dir) / "demo_table.json", result)
    return result


if __name__ == "__main__":
    print(json.dumps(run_demo(), indent=2))
