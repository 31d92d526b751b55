"""`prunetune demo`: the reference model compacted by the loop and by one shot, with a side-by-side table."""


def register(sub):
    p = sub.add_parser("demo", help="compact the built-in reference model gradually and in one shot, compare")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to recipes/demo.yaml")
    p.add_argument("--recipe", default=None, help="another recipe to run the same way")
    p.add_argument("--restart", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run)


def run(args) -> int:
    from prunetune.loop.demo import RECIPE, run_demo

    run_demo(args.recipe or RECIPE, args.overrides, restart=args.restart, progress=not args.no_progress)
    return 0
