"""Run reports: the per-iteration table and the accuracy-versus-parameters, accuracy-versus-seconds-per-solved-
problem and recovery-loss plots.

Reads only what a run wrote (summary.json, metrics.jsonl, iteration_NN/state/eval.json), so it can be
re-drawn at any time with `prunetune report RUN_DIR`, also for a run that is still going.
"""

from __future__ import annotations

import html
from pathlib import Path

from prunetune.errors import UserError
from prunetune.io import COUNT, atomic_write_text, read_json
from prunetune.table import format_table


def _load_run(run: Path) -> dict:
    from prunetune.loop.runfiles import EVAL_FIELDS, _redo, read_baseline, read_metrics, read_summary

    metrics = read_metrics(run)
    baseline = read_baseline(run)
    rows = []
    for d in sorted(run.glob("iteration_[0-9][0-9]")):
        for f in (d / "state" / "eval.json", d / "eval.json"):  # the second: runs before state/ existed
            if f.is_file():
                rows.append(read_json(f, fix=_redo(d), fields={**EVAL_FIELDS, "iteration": COUNT}))
                break
    return {"dir": run, "metrics": metrics, "baseline": baseline, "rows": rows, "summary": read_summary(run)}


def _accuracy(metrics: dict, task: str) -> float | None:
    return metrics.get(task, {}).get("accuracy")


def _seconds(metrics: dict, task: str) -> float | None:
    """Seconds per solved problem (total generation time / solved); None when unmeasured or none solved."""
    return metrics.get(task, {}).get("seconds_per_solved")


def _fmt_seconds(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _tasks(run: dict) -> list[str]:
    if run["baseline"]:
        return [t for t, m in run["baseline"]["metrics"].items() if "accuracy" in m]
    return []


def _curve(run: dict, task: str) -> tuple[list[float], list[float]]:
    base = run["baseline"]
    xs, ys = [base["non_embedding_params"]], [_accuracy(base["metrics"], task)]
    for r in run["rows"]:
        xs.append(r["non_embedding_params"])
        ys.append(_accuracy(r["metrics"], task))
    return xs, ys


def _plots(run: dict, others: list[dict], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    dense_n = run["baseline"]["non_embedding_params"]
    for task in _tasks(run):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        xs, ys = _curve(run, task)
        ax.plot(
            [x / dense_n for x in xs],
            ys,
            "o-",
            label=run["dir"].name + (" (one-shot)" if run["summary"].get("one_shot") else " (gradual)"),
        )
        for i, (x, y) in enumerate(zip(xs, ys)):
            if i and y is not None:
                ax.annotate(str(i), (x / dense_n, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        fam = [f for f in run["summary"].get("family", []) if _accuracy(f["metrics"], task) is not None]
        if fam:  # the family this run exported: its accuracy-vs-size frontier
            ax.scatter([f["non_embedding_params"] / dense_n for f in fam], [_accuracy(f["metrics"], task) for f in fam],
                       s=140, facecolors="none", edgecolors="tab:red", linewidths=2, zorder=6, label="family (exported)")
        for other in others:
            if other["baseline"] and task in other["baseline"]["metrics"]:
                ox, oy = _curve(other, task)
                label = other["dir"].name + (" (one-shot)" if other["summary"].get("one_shot") else "")
                ax.plot([x / dense_n for x in ox], oy, "s--", label=label)
        ax.scatter(
            [1.0],
            [_accuracy(run["baseline"]["metrics"], task)],
            marker="*",
            s=180,
            color="black",
            zorder=5,
            label="dense",
        )
        ax.set_xlabel("non-embedding parameters kept (fraction of dense)")
        ax.set_ylabel(f"{task} accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"Accuracy vs size: {task}")
        fig.tight_layout()
        name = f"accuracy_vs_params_{task}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        files.append(name)

    for task in _tasks(run):
        name = _cost_plot(run, others, task, out, plt)
        if name:
            files.append(name)

    losses = [m for m in run["metrics"] if m.get("event") == "recover" and m.get("loss") is not None]
    if losses:
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
        offset, by_iter = 0, {}
        for m in losses:
            by_iter.setdefault((m["iteration"], m.get("attempt", 0)), []).append(m)
        for (it, attempt), ms in by_iter.items():
            steps = [offset + m.get("step", j + 1) for j, m in enumerate(ms)]
            ax.plot(
                steps,
                [m["loss"] for m in ms],
                label=f"iteration {it}" + (f" (retry {attempt})" if attempt else ""),
            )
            offset = steps[-1]
        ax.set_xlabel("recovery step (cumulative)")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
        if len(by_iter) <= 12:
            ax.legend(fontsize=7, ncol=2)
        ax.set_title("Recovery loss per iteration")
        fig.tight_layout()
        fig.savefig(out / "recovery_loss.png", dpi=110)
        plt.close(fig)
        files.append("recovery_loss.png")
    return files


def _cost_plot(run: dict, others: list[dict], task: str, out: Path, plt) -> str | None:
    """Accuracy against seconds per solved problem (dense, every iteration, compared runs); None if unmeasured."""

    def points(r: dict) -> list[tuple[float, float, int]]:
        evals = [r["baseline"]["metrics"], *[row["metrics"] for row in r["rows"]]]
        return [(_seconds(m, task), _accuracy(m, task), i) for i, m in enumerate(evals)
                if _seconds(m, task) is not None and _accuracy(m, task) is not None]

    mine = points(run)
    if not mine:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    label = run["dir"].name + (" (one-shot)" if run["summary"].get("one_shot") else " (gradual)")
    ax.plot([p[0] for p in mine], [p[1] for p in mine], "o-", label=label)
    for x, y, i in mine:
        ax.annotate("dense" if i == 0 else str(i), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for other in others:
        if other["baseline"] and task in other["baseline"]["metrics"]:
            theirs = points(other)
            label = other["dir"].name + (" (one-shot)" if other["summary"].get("one_shot") else "")
            ax.plot([p[0] for p in theirs], [p[1] for p in theirs], "s--", label=label)
    ax.set_xlabel("seconds per solved problem (generation time / solved)")
    ax.set_ylabel(f"{task} accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Accuracy vs time per solved problem: {task}")
    fig.tight_layout()
    name = f"accuracy_vs_seconds_{task}.png"
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


WIDTHS = (("hidden", "hidden_size"), ("intermediate", "intermediate_size"), ("kv heads", "num_key_value_heads"),
          ("layers", "num_hidden_layers"), ("experts", "num_experts"), ("expert width", "moe_intermediate_size"),
          ("shared width", "shared_expert_intermediate_size"))
"""The report's width columns: (header, the metrics events' / ModelShape's field)."""


def _table(run: dict) -> tuple[list[str], list[list[str]]]:
    tasks = _tasks(run)
    base = run["baseline"]
    dense_n = base["non_embedding_params"]
    shape = base.get("shape", {})
    evals = {m["iteration"]: m for m in run["metrics"] if m.get("event") == "eval"}
    # every width the run records, each shown where some model of the run has it (experts on MoE runs)
    widths = [(label, key) for label, key in WIDTHS
              if any(isinstance(x.get(key), int) and x.get(key) for x in [shape, *evals.values()])]
    head = ["iteration", "non-emb params", "kept", *[label for label, _ in widths], "damage", "steps"] + [
        f"{t} acc" for t in tasks
    ] + [f"{t} s/solved" for t in tasks]
    # the last attempt of each iteration is the one kept (a rollback's cut and recovery come before it)
    damage = {m["iteration"]: m.get("damage") for m in run["metrics"] if m.get("event") == "prune"}
    steps = {m["iteration"]: m.get("steps") for m in run["metrics"] if m.get("event") == "recovery_done"}
    # allocation: probe: each cut's decision (probe steps -> steps decided, the fitted floor of its measure)
    probes = {m["iteration"]: _probe_cell(m) for m in run["metrics"]
              if m.get("event") == "budget" and "probe_steps" in m}
    if probes:
        head.insert(head.index("steps") + 1, "probe")
    rows = [
        [
            "dense",
            f"{dense_n:,}",
            "100.0%",
            *[str(shape.get(key, "")) for _, key in widths],
            "",
            "",
        ]
        + ([""] if probes else [])
        + [f"{_accuracy(base['metrics'], t):.3f}" for t in tasks]
        + [_fmt_seconds(_seconds(base["metrics"], t)) for t in tasks]
    ]
    for r in run["rows"]:
        m = evals.get(r["iteration"], {})
        rows.append(
            [
                str(r["iteration"]),
                f"{r['non_embedding_params']:,}",
                f"{r['non_embedding_params'] / dense_n:.1%}",
                *[str(m.get(key, "")) for _, key in widths],
                "-" if damage.get(r["iteration"]) is None else f"{damage[r['iteration']]:+.3f}",
                str(steps.get(r["iteration"], "-")),
            ]
            + ([probes.get(r["iteration"], "-")] if probes else [])
            + [
                f"{_accuracy(r['metrics'], t):.3f}" if _accuracy(r["metrics"], t) is not None else "-"
                for t in tasks
            ]
            + [_fmt_seconds(_seconds(r["metrics"], t)) for t in tasks]
        )
    return head, rows


def _probe_cell(m: dict) -> str:
    """'4 -> 9, floor 0.412': the probe's steps, the steps the cut trained (the decision; the last cut's
    is what was left), and the floor the fit predicts for the measure."""
    curve = m.get("curve") or {}
    floor = f", floor {curve['floor']:.3f}" if "floor" in curve else ""
    return f"{m['probe_steps']} -> {m.get('steps', '-')}{floor}"


def write_report(run_dir: str | Path, compare: list[str | Path] | None = None) -> Path:
    """Write report.md, report.html and PNG plots into the run directory; returns report.md's path."""
    run_dir = Path(run_dir)
    if not (run_dir / "metrics.jsonl").is_file() and not (run_dir / "baseline").is_dir():
        raise UserError(f"'{run_dir}' is not a prunetune run directory (no metrics.jsonl)")
    from prunetune.io import check_output_path

    for name in ("report.md", "report.html"):  # before any plot is drawn
        check_output_path(run_dir / name, "report", may_exist=True, kind="file")
    run = _load_run(run_dir)
    if not run["baseline"]:
        raise UserError(f"'{run_dir}' has no baseline evaluation yet")
    others = []
    for c in compare or []:
        if not (Path(c) / "baseline" / "eval.json").is_file():
            raise UserError(f"--compare '{c}' is not a prunetune run directory (no baseline/eval.json)")
    candidates = [Path(c) for c in (compare or [])]
    recipe_compare = None
    if (run_dir / "recipe.yaml").is_file():
        from prunetune.loop.runfiles import read_run_yaml

        recipe_compare = read_run_yaml(run_dir / "recipe.yaml").get("compare_with")
    if recipe_compare:
        candidates.append(Path(recipe_compare))
    sibling = run_dir.parent / f"{run_dir.name}-oneshot"
    if sibling.is_dir():
        candidates.append(sibling)
    seen = set()
    for c in candidates:
        if (
            c.resolve() in seen
            or c.resolve() == run_dir.resolve()
            or not (c / "baseline" / "eval.json").is_file()
        ):
            continue
        seen.add(c.resolve())
        others.append(_load_run(c))
    plots = _plots(run, others, run_dir)
    head, rows = _table(run)
    s = run["summary"]
    lines = [f"# prunetune report: {run_dir.name}", ""]
    if s:
        lines += [
            f"- model: `{s.get('model')}`{' (one-shot baseline)' if s.get('one_shot') else ''}",
            f"- completed iterations: {s.get('completed_iterations')} of {s.get('planned_iterations')} planned"
            f"; rollbacks: {s.get('rollbacks', 0)}",
            f"- recovery: {s.get('recovery_steps', 0)} optimizer steps, {s.get('tokens', 0):,} tokens; "
            f"wall time {s.get('wall_time', 0):.0f} s",
        ]
        if s.get("stopped_reason"):
            lines.append(f"- stopped: {s['stopped_reason']}")
        lines.append("")
    lines += format_table(head, rows, style="markdown").splitlines()
    if s.get("family"):
        tasks = _tasks(run)
        fam_rows = [[f["dir"], f"{f['keep']:.2f}", f"{f['kept']:.1%}", f"{f['params']:,}", str(f["iteration"]),
                     *[f"{_accuracy(f['metrics'], t):.3f}" for t in tasks],
                     *[_fmt_seconds(_seconds(f["metrics"], t)) for t in tasks]] for f in s["family"]]
        lines += ["", "Family (servable checkpoints, one per requested size; `prunetune pick` chooses):", ""]
        lines += format_table(["checkpoint", "size asked", "kept", "params", "iteration", *[f"{t} acc" for t in tasks],
                               *[f"{t} s/solved" for t in tasks]], fam_rows, style="markdown").splitlines()
    for o in others:
        oh, orows = _table(o)
        lines += ["", f"Compared run `{o['dir']}`:", "", *format_table(oh, orows, style="markdown").splitlines()]
    lines += ["", "s/solved: seconds of generation per solved problem (total generation time / problems solved, "
              "as the run's evaluation measured it; `prunetune pick --max-seconds-per-solved` selects by it)."]
    lines += [""] + [f"![{p}]({p})" for p in plots] + [""]
    md = "\n".join(lines)
    atomic_write_text(run_dir / "report.md", md)
    body = [f"<h1>prunetune report: {html.escape(run_dir.name)}</h1>"]
    body += [
        "<ul>"
        + "".join(f"<li>{html.escape(line[2:])}</li>" for line in lines if line.startswith("- "))
        + "</ul>"
    ]
    body.append(
        "<table border=1 cellpadding=4 style='border-collapse:collapse'><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + "</tr>"
        + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        + "</table>"
    )
    body += [f"<p><img src='{p}' alt='{p}'></p>" for p in plots]
    atomic_write_text(
        run_dir / "report.html",
        "<!doctype html><meta charset=utf-8><title>prunetune report</title>"
        "<body style='font-family:sans-serif'>" + "\n".join(body) + "</body>",
    )
    return run_dir / "report.md"
