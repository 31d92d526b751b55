"""`prunetune recover MODEL --out OUT --method M --data FILE [key=value ...]`: one recovery run.

Writes a stock checkpoint with `metrics.jsonl` and `recovery.json` inside it, all in one rename.
Under torchrun every rank trains and only rank 0 writes.
"""

from __future__ import annotations

EPILOG = (
    "key=value overrides set recovery config keys (each value checked against its key's type; dotted keys "
    "nest), e.g. max_steps=40 learning_rate=1e-3 lora.r=8. `prunetune ls -v` lists every method's keys."
)


def register(sub):
    p = sub.add_parser("recover", help="train a (pruned) model with cpt, sft, distill or grpo", epilog=EPILOG)
    p.add_argument("model", help="checkpoint directory or built-in name (tiny-random-<family>, reference)")
    p.add_argument("--out", required=True, help="output checkpoint directory (must not exist)")
    p.add_argument("--method", required=True, help="cpt | sft | distill | grpo")
    p.add_argument(
        "--data", help="training data: JSONL / JSON / parquet / txt / datasets directory, or a text source (arith)"
    )
    p.add_argument("--teacher", help="teacher checkpoint for --method distill")
    p.add_argument("--task", help="task whose score is the grpo reward (e.g. arith)")
    p.add_argument("--chunk", type=int, help="train on chunk I (0-based) of the data ...")
    p.add_argument("--chunk-size", type=int, help="... of N records (disjoint chunks per iteration)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recovery config overrides")
    p.set_defaults(handler=run)
    p.__class__ = _intermixed(type(p))


def _intermixed(cls):
    """Let key=value overrides follow the options (argparse otherwise binds positionals in one chunk)."""

    class Intermixed(cls):
        _inside = False

        def parse_known_args(self, args=None, namespace=None):
            if self._inside:  # parse_known_intermixed_args calls back into parse_known_args
                return super().parse_known_args(args, namespace)
            self._inside = True
            try:
                return self.parse_known_intermixed_args(args, namespace)
            finally:
                self._inside = False

    return Intermixed


def _records(args, tokenizer):
    """(training records, reward functions or None) from --data / --task, chunked when asked."""
    from pathlib import Path

    from prunetune.data import chunk, is_registered, load_records, take_chunk
    from prunetune.errors import UserError

    if (args.chunk is None) != (args.chunk_size is None):
        raise UserError("--chunk and --chunk-size go together")
    if args.chunk is not None and (args.chunk < 0 or args.chunk_size < 1):
        raise UserError("--chunk must be >= 0 and --chunk-size >= 1")
    if args.method == "grpo":
        import prunetune.tasks as tasks

        task = tasks.get_task(args.task)
        examples = task.examples(split="train")
        if args.data:
            records = load_records(args.data)
        else:
            records = tasks.grpo_records(task, examples, tokenizer)
        rewards = [tasks.reward_function(task, examples=examples)]
    elif is_registered(args.data):
        index, size = (args.chunk, args.chunk_size) if args.chunk is not None else (0, 512)
        return chunk(args.data, index, size, seed=0), None
    elif args.data and Path(args.data).exists():
        records, rewards = load_records(args.data), None
    else:
        raise UserError(f"--data '{args.data}' does not exist" if args.data else "--data is required")
    if args.chunk is not None:
        records = take_chunk(records, args.chunk, args.chunk_size)
    return records, rewards


def _check_task(args):
    from prunetune.errors import UserError

    if args.method != "grpo" and args.task:
        raise UserError("--task is only used by --method grpo")
    if args.method == "grpo":
        if not args.task:
            raise UserError("--method grpo needs --task NAME (its score is the reward)")
        from prunetune.tasks import get_task

        get_task(args.task)


def execute(args):
    """Validate everything cheap first, then train; rank 0 writes --out. Returns the RecoveryResult."""
    import os
    import shutil
    from pathlib import Path

    from prunetune.checkpoint import is_builtin, load_model, model_config, read_history, resolve_model_path
    from prunetune.config import parse_overrides
    from prunetune.errors import UserError
    from prunetune.io import check_output_path, clean_stale_temps, staging_path
    from prunetune.recovery import check_environment, recover, resolve_config, sharding

    out = check_output_path(args.out, "--out")
    overrides = parse_overrides(args.overrides)
    # an unknown method / key fails before any loading
    cfg = resolve_config(args.method, overrides)
    check_environment(cfg)
    if args.teacher and args.method != "distill":
        raise UserError("--teacher is only used by --method distill")
    if args.method == "distill" and not args.teacher:
        raise UserError("--method distill needs --teacher DIR")
    src = resolve_model_path(args.model)
    if not is_builtin(src):
        read_history(src)  # written beside the output at the end: a corrupt one fails now, not after training
    # a sharding this launch or this model cannot run: from its config, before the weights load
    sharding.check(cfg, key="config", tied_embeddings=bool(getattr(model_config(src), "tie_word_embeddings", False)))
    _check_task(args)
    if args.data and args.method != "grpo":
        from prunetune.data import check_source, is_registered, load_records

        check_source(args.data, "--data")
        if not is_registered(args.data):
            load_records(args.data)  # readable, before any weight loads (cached for the real read)
    model, tok = load_model(src, args.dtype)
    records, reward_funcs = _records(args, tok)
    teacher = load_model(args.teacher, args.dtype, with_tokenizer=False)[0] if args.teacher else None
    rank = int(os.environ.get("RANK", "0"))
    clean_stale_temps(out.parent, out.name)  # what a killed recover of this --out left
    work = staging_path(out)  # scratch beside the output (not in /tmp), removed however this ends
    work.mkdir(parents=True)
    try:
        result = recover(
            model,
            tok,
            args.method,
            records,
            overrides,
            teacher=teacher,
            reward_funcs=reward_funcs,
            work_dir=work,
            metrics_path=Path(work) / "metrics.jsonl",
            progress=not args.quiet,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if rank == 0:
        from dataclasses import asdict

        config = asdict(resolve_config(args.method, overrides))
        write_outputs(result, tok, out, src=src, args=args, config=config)
        print(
            f"recovered with {args.method}: {result.steps} steps, {result.tokens_seen} tokens; "
            f"final loss {result.metrics[-1]['loss']:.4f} -> {out}"
            if result.metrics
            else f"wrote {out}"
        )
    return result


def write_outputs(result, tokenizer, out, *, src: str, args, config: dict) -> None:
    """Checkpoint + metrics.jsonl + recovery.json staged in a temporary sibling, then renamed into place."""
    import json
    import os
    import shutil
    from pathlib import Path

    from prunetune.checkpoint import read_history, save_checkpoint
    from prunetune.errors import UserError
    from prunetune.io import atomic_write_text, staging_path

    out = Path(out)
    from prunetune.checkpoint import is_builtin

    history = [] if is_builtin(src) else read_history(src)
    summary = {
        "method": args.method,
        "source": src,
        "data": args.data,
        "teacher": args.teacher,
        "task": args.task,
        "chunk": args.chunk,
        "chunk_size": args.chunk_size,
        "config": config,
        "steps": result.steps,
        "tokens_seen": result.tokens_seen,
    }
    stage = staging_path(out)
    try:
        save_checkpoint(
            result.model, tokenizer, stage, history=history, extra_json={"recovery.json": summary}
        )
        atomic_write_text(stage / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in result.metrics))
        if out.exists():
            raise UserError(f"--out '{out}' already exists")
        os.rename(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def run(args) -> int:
    execute(args)
    return 0
