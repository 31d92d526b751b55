"""`prunetune score --task T --completions FILE.jsonl`: score completions produced elsewhere (e.g. vLLM).

Each line: the example id (`task_id` for HumanEval, or `id` / `example_id`) and `completion`.
Several lines with the same id are samples of one problem and give pass@k. Code runs in the sandbox.
"""

from prunetune.commands.taskflags import add_task_flags


def register(sub):
    p = sub.add_parser("score", help="score externally generated completions with a task's scorer")
    p.add_argument("--task", required=True, help="task name (humaneval, mbpp, gsm8k, gsm_symbolic, ...)")
    p.add_argument("--completions", required=True, help="JSONL: one {id|task_id, completion} per line")
    p.add_argument("--out", default=None, help="results JSON (per-line predictions go to <out>.predictions/)")
    add_task_flags(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from prunetune.commands.taskflags import (
        build_tasks,
        check_out,
        print_table,
        staged_predictions,
        write_results,
    )
    from prunetune.data import load_records, where
    from prunetune.errors import UserError
    from prunetune.tasks.evaluate import score_completions, write_predictions

    check_out(args.out)
    (task,) = build_tasks([args.task], args)
    records = load_records(args.completions)
    index = None
    examples, completions = [], []
    for i, rec in enumerate(records, 1):
        ex_id = rec.get("task_id", rec.get("id", rec.get("example_id")))
        if ex_id is None or "completion" not in rec:
            raise UserError(
                f"{where(args.completions, i - 1)}: a record needs an id (task_id/id/example_id) and 'completion'"
            )
        ex = None
        if hasattr(task, "get_example"):
            try:
                ex = task.get_example(str(ex_id))
            except KeyError:
                ex = None
        if ex is None:
            if index is None:
                index = {e.id: e for e in task.examples()}
            ex = index.get(str(ex_id))
        if ex is None:
            raise UserError(f"{where(args.completions, i - 1)}: unknown {task.name} example id '{ex_id}'")
        examples.append(ex)
        completions.append(str(rec["completion"]))
    metrics, records = score_completions(task, examples, completions)
    with staged_predictions(args.out) as stage:
        pred = write_predictions(stage, task.name, records)
        results = [{"task": task.name, "n": len({e.id for e in examples}), "metrics": metrics, "predictions": pred}]
        print_table(results)
        write_results(args.out, results, stage)
    return 0
