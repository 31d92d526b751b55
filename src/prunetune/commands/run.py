"""`prunetune run RECIPE [key=value ...]`: the Prune-Tune Loop, resumable."""


def register(sub):
    p = sub.add_parser("run", help="run the Prune-Tune Loop on a recipe (re-run the same command to resume)")
    p.add_argument("recipe", help="YAML recipe (see recipes/)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. output_dir=runs/x iterations=2")
    p.add_argument("--restart", action="store_true", help="discard what output_dir holds and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args) -> int:
    import json
    import sys

    from prunetune.loop import load_recipe
    from prunetune.loop import run as run_loop

    recipe = load_recipe(args.recipe, args.overrides)
    summary = run_loop(recipe, restart=args.restart, progress=not args.no_progress)
    print(
        json.dumps(
            {
                k: summary[k]
                for k in ("completed_iterations", "non_embedding_params_kept", "stopped_reason")
                if k in summary
            }
        )
    )
    print(f"wrote {recipe.output_dir}/summary.json and {recipe.output_dir}/report.md")
    if summary.get("stopped_reason"):  # the run did not reach its target: say so to scripts too
        print(f"prunetune: stopped: {summary['stopped_reason']}", file=sys.stderr)
        return 1
    return 0
