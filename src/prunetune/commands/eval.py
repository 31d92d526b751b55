"""`prunetune eval MODEL --tasks a,b`: accuracy, length, truncation, thinking tokens and seconds per solved
problem per task, as a table and JSON (per-problem thinking / answer tokens and seconds in the predictions)."""

from prunetune.commands.taskflags import add_task_flags


def register(sub):
    p = sub.add_parser(
        "eval", help="evaluate a model on tasks (math, code, perplexity, reasoning-gym, lm-eval)"
    )
    p.add_argument("model", help="checkpoint directory or built-in name (reference, tiny-random-<family>)")
    p.add_argument("--tasks", default="", help="comma-separated task names (gsm_symbolic,humaneval,...)")
    p.add_argument("--limit", type=int, default=None, help="examples per task")
    p.add_argument("--split", default="test")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--num-samples", type=int, default=1, help="samples per prompt; >1 samples and reports pass@k"
    )
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32")
    p.add_argument(
        "--backend",
        default="hf",
        choices=["hf", "vllm"],
        help="generate with transformers (hf) or vLLM (the checkpoint served as written; see README, Serving)",
    )
    p.add_argument("--lm-eval-tasks", default="", help="comma-separated lm-evaluation-harness task names")
    p.add_argument("--lm-eval-include", default=None, help="directory of custom lm-eval task YAMLs")
    p.add_argument("--out", default=None, help="results JSON (predictions go to <out>.predictions/)")
    p.add_argument("--no-progress", action="store_true")
    add_task_flags(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from prunetune.commands.taskflags import (
        build_tasks,
        check_out,
        print_table,
        staged_predictions,
        task_options,
        write_results,
    )
    from prunetune.errors import UserError

    names = [t for t in args.tasks.split(",") if t.strip()]
    lm_names = [t for t in args.lm_eval_tasks.split(",") if t.strip()]
    if not names and not lm_names:
        raise UserError("give --tasks (and/or --lm-eval-tasks)")
    if args.limit is not None and args.limit <= 0:
        raise UserError(f"--limit must be a positive number of examples, got {args.limit}")
    for flag in ("max_new_tokens", "batch_size", "num_samples"):
        if getattr(args, flag) <= 0:
            raise UserError(f"--{flag.replace('_', '-')} must be positive")
    check_out(args.out)
    model_dir = None
    if args.backend == "vllm":
        from prunetune.checkpoint import checkpoint_dir
        from prunetune.tasks.vllm_backend import vllm_python

        vllm_python()
        model_dir = checkpoint_dir(args.model)
        if model_dir is None or lm_names:
            raise UserError(
                "--backend vllm serves a checkpoint directory (not a model built in code) and runs --tasks only"
            )
    tasks = build_tasks([n.strip() for n in names], args)
    task_options(args)  # a bad --task-option item fails before the model loads
    # read every task's examples before loading the model: bad names, files and lines fail fast
    examples = [t.examples(split=args.split, limit=args.limit, seed=args.seed) for t in tasks]

    from prunetune.checkpoint import load_model

    model, tok = load_model(args.model, args.dtype)
    with staged_predictions(args.out) as pred_dir:
        results = _evaluate(args, model, tok, tasks, examples, lm_names, pred_dir, model_dir)
        print_table(results)
        write_results(args.out, results, pred_dir)
    return 0


def _evaluate(args, model, tok, tasks, examples, lm_names, pred_dir, model_dir) -> list[dict]:
    from prunetune.tasks.evaluate import evaluate

    results = []
    for task, exs in zip(tasks, examples):
        results.append(
            evaluate(
                model,
                tok,
                task,
                limit=args.limit,
                split=args.split,
                max_new_tokens=args.max_new_tokens,
                batch_size=args.batch_size,
                num_samples=args.num_samples,
                temperature=args.temperature,
                top_p=args.top_p,
                seed=args.seed,
                out_dir=pred_dir,
                examples=exs,
                progress=not args.no_progress,
                backend=args.backend,
                model_dir=model_dir,
            )
        )
    if lm_names:
        from prunetune.commands.taskflags import task_options
        from prunetune.tasks.lm_eval_bridge import run_lm_eval

        extra = task_options(args)

        results += run_lm_eval(
            model,
            tok,
            lm_names,
            include_path=args.lm_eval_include,
            limit=args.limit,
            batch_size=args.batch_size,
            num_fewshot=args.num_fewshot,
            seed=args.seed,
            think=extra.get("think", "auto"),
            enable_thinking=extra.get("enable_thinking"),
        )
    return results
