"""`prunetune report RUN_DIR`: report.md, report.html and PNG plots from what a run wrote."""


def register(sub):
    p = sub.add_parser("report", help="write report.md/.html and plots for a run directory")
    p.add_argument("run_dir")
    p.add_argument("--compare", action="append", default=[], help="another run to draw on the same axes")
    p.set_defaults(handler=run)


def run(args) -> int:
    from prunetune.loop.report import write_report

    path = write_report(args.run_dir, args.compare)
    print(f"wrote {path} and {path.with_suffix('.html')}")
    return 0
