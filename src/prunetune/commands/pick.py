"""`prunetune pick RUN --min-accuracy A [--max-params N] [--max-seconds-per-solved S]`: the smallest checkpoint
of a run that meets a bar (seconds per solved problem: total generation time / problems solved, as evaluated)."""


def register(sub):
    p = sub.add_parser("pick", help="print the smallest checkpoint of a run (its family, else its iterations) meeting a bar")
    p.add_argument("run_dir")
    p.add_argument("--min-accuracy", type=float, default=None, help="accuracy the checkpoint must reach")
    p.add_argument("--max-params", type=int, default=None, help="largest total parameter count allowed")
    p.add_argument("--max-seconds-per-solved", type=float, default=None,
                   help="largest generation time per solved problem allowed (seconds, as the run evaluated it)")
    p.add_argument("--task", default=None, help="task whose accuracy counts (default: the run's first)")
    p.set_defaults(handler=run)


def candidates(run_dir) -> list[dict]:
    """The run's family members, or every accepted iteration when it exported none: dir, params, metrics."""
    from pathlib import Path

    from prunetune.errors import UserError
    from prunetune.loop.family import members
    from prunetune.loop.rundir import RunDir
    from prunetune.loop.runfiles import is_run_dir, read_eval

    path = Path(run_dir)
    if not path.is_dir():
        raise UserError(f"'{run_dir}' does not exist" if not path.exists() else f"'{run_dir}' is a file, not a run directory")
    if not is_run_dir(path):
        raise UserError(f"'{run_dir}' is not a prunetune run directory (no recipe.yaml with a run's log beside it)")
    rd = RunDir(path, "")
    if not rd.baseline():
        raise UserError(f"'{run_dir}' is a run that has not measured its baseline yet: nothing to pick from")
    family = members(path)
    if family:
        return [{**m, "dir": str(path / m["dir"])} for m in family]
    rows = [{**read_eval(d), "dir": str(d)} for d in rd.iteration_dirs()]
    if not rows:
        raise UserError(f"'{run_dir}' is a run with no accepted iteration yet (killed or stopped before its first): "
                        "resume it with the same `prunetune run` command")
    return rows


def run(args) -> int:
    import sys

    from prunetune.errors import UserError
    from prunetune.table import format_table

    max_s = args.max_seconds_per_solved
    if args.min_accuracy is None and args.max_params is None and max_s is None:
        raise UserError("give --min-accuracy, --max-params and/or --max-seconds-per-solved")
    if args.min_accuracy is not None and not 0.0 <= args.min_accuracy <= 1.0:
        raise UserError(f"--min-accuracy must be in [0, 1], got {args.min_accuracy}")
    if max_s is not None and not max_s > 0:
        raise UserError(f"--max-seconds-per-solved must be positive, got {max_s}")
    rows = candidates(args.run_dir)
    tasks = [t for r in rows for t, m in r["metrics"].items() if "accuracy" in m]
    task = args.task or (tasks[0] if tasks else None)
    if args.task and args.task not in tasks:
        raise UserError(f"--task '{args.task}' was not evaluated in this run ({', '.join(sorted(set(tasks)))})")
    def spp(r):  # None: not measured (a run evaluated before prunetune timed generation) or nothing solved
        return r["metrics"].get(task, {}).get("seconds_per_solved")

    if max_s is not None and not any("seconds_per_solved" in r["metrics"].get(task, {}) for r in rows):
        raise UserError(f"--max-seconds-per-solved: this run recorded no seconds per solved problem for '{task}' "
                        "(evaluated by an older prunetune); re-evaluate its checkpoints with prunetune eval")
    ok = [
        r for r in rows
        if (args.min_accuracy is None or (r["metrics"].get(task, {}).get("accuracy") or 0.0) >= args.min_accuracy)
        and (args.max_params is None or r["params"] <= args.max_params)
        and (max_s is None or (spp(r) is not None and spp(r) <= max_s))
    ]
    table = [[r["dir"], f"{r['params']:,}", f"{r['metrics'].get(task, {}).get('accuracy', float('nan')):.3f}",
              "-" if spp(r) is None else f"{spp(r):.3f}"] for r in rows]
    print(format_table(["checkpoint", "params", f"{task} acc", "s/solved"], table, align="lrrr"))
    if not ok:
        print("prunetune: no checkpoint of this run meets the bar", file=sys.stderr)
        return 1
    best = min(ok, key=lambda r: (r["params"], r["dir"]))  # ties (one cut met several sizes): the smallest name
    print(f"picked: {best['dir']}")
    return 0
