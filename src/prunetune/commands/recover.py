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
    p = sub.add_parser("recover", help="train a (pruned) model with cpt, sft, distill, onpolicy or grpo", epilog=EPILOG)
    p.add_argument("model", help="checkpoint directory or built-in name (tiny-random-<family>, reference)")
    p.add_argument("--out", required=True, help="output checkpoint directory (must not exist)")
    p.add_argument("--method", required=True, help="cpt | sft | distill | onpolicy | grpo")
    p.add_argument(
        "--data", help="training data: JSONL / JSON / parquet / txt / datasets directory, or a text source (arith)"
    )
    p.add_argument("--teacher", help="teacher checkpoint: --method distill / onpolicy, --teacher-solutions")
    p.add_argument("--prompts", nargs="+", metavar="SRC",
                   help="prompts instead of --data: task names (their train-side generator), JSONL files or text "
                        "sources; --method onpolicy trains on them, --teacher-solutions has the teacher solve them")
    p.add_argument("--count", type=int, default=256, help="--prompts: how many (default 256)")
    p.add_argument("--teacher-solutions", action="store_true",
                   help="sequence-level distillation: train on the teacher's solutions to --prompts (sft, or "
                        "distill with format=prompt_completion)")
    p.add_argument("--rejection", action="store_true", help="--teacher-solutions: keep only those the task scores correct")
    p.add_argument("--max-new-tokens", type=int, default=128, help="--teacher-solutions: tokens per solution")
    p.add_argument("--cache", help="--teacher-solutions: the generations file, reused and extended (default OUT.teacher_data.jsonl)")
    p.add_argument("--correct-teacher", type=int, metavar="STEPS",
                   help="teacher correction: fine-tune the teacher STEPS cpt steps on --data (default arith) first")
    p.add_argument("--task-option", action="append", default=[], metavar="TASK.KEY=VALUE",
                   help="--prompts from a task: an option of that task, e.g. products.max_digits=1")
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
    teaching = _teaching_options(args)
    uses_teacher = args.method in ("distill", "onpolicy") or args.teacher_solutions
    if args.teacher and not uses_teacher:
        raise UserError("--teacher is only used by --method distill / onpolicy and --teacher-solutions")
    if uses_teacher and not args.teacher:
        raise UserError(f"{'--teacher-solutions' if args.teacher_solutions else f'--method {args.method}'} needs --teacher DIR")
    src = resolve_model_path(args.model)
    if not is_builtin(src):
        read_history(src)  # written beside the output at the end: a corrupt one fails now, not after training
    # a sharding this launch or this model cannot run: from its config, before the weights load
    sharding.check(cfg, key="config", tied_embeddings=bool(getattr(model_config(src), "tie_word_embeddings", False)))
    _check_task(args)
    if teaching is not None:
        teaching.check(args, overrides)
    if args.data and args.method != "grpo":
        from prunetune.data import check_source, is_registered, load_records

        check_source(args.data, "--data")
        if not is_registered(args.data):
            load_records(args.data)  # readable, before any weight loads (cached for the real read)
    model, tok = load_model(src, args.dtype)
    teacher = load_model(args.teacher, args.dtype, with_tokenizer=False)[0] if args.teacher else None
    if teaching is not None:
        teacher = teaching.correct(teacher, tok, progress=not args.quiet)
    if teaching is not None and teaching.prompts is not None:
        records, reward_funcs = teaching.records(teacher, tok, progress=not args.quiet), None
        if args.teacher_solutions and overrides.get("chat_template") is None:
            overrides["chat_template"] = False  # the task prompts are formatted already
    else:
        records, reward_funcs = _records(args, tok)
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
        "prompts": args.prompts,
        "teacher_solutions": args.teacher_solutions,
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


class _Teaching:
    """--prompts / --teacher-solutions / --correct-teacher: the loop's teacher options for one recovery."""

    def __init__(self, args, prompts, data, correction, task_options):
        self.args, self.prompts, self.data, self.correction = args, prompts, data, correction
        self.task_options = task_options

    def check(self, args, overrides) -> None:
        from pathlib import Path

        from prunetune.errors import UserError
        from prunetune.io import check_output_path
        from prunetune.loop.teaching import check_sources

        if self.prompts is not None:
            check_sources(self.prompts, "--prompts")
            if not self.data and args.method not in ("onpolicy",):
                raise UserError("--prompts feeds --method onpolicy or --teacher-solutions")
        if self.data is not None:
            if args.method not in ("sft", "distill") or (args.method == "distill" and overrides.get("format") != "prompt_completion"):
                raise UserError("--teacher-solutions trains on (prompt, solution) pairs: --method sft, or distill with "
                                "format=prompt_completion")
            if not Path(self.cache_path).exists():
                check_output_path(self.cache_path, "--cache")
            self.cache = self._open_cache()  # a corrupt or mismatched cache fails before any weights load
        if self.correction is not None and args.data:
            from prunetune.data import check_source

            check_source(args.data, "--data")

    def _open_cache(self):
        from prunetune.loop.teaching import open_cache

        name = str(self.args.teacher) + (f" corrected cpt {self.args.correct_teacher}" if self.correction else "")
        return open_cache(self.cache_path, self.prompts, self.data, name, self.task_options)

    @property
    def cache_path(self) -> str:
        return self.args.cache or f"{str(self.args.out).rstrip('/')}.teacher_data.jsonl"

    def correct(self, teacher, tok, *, progress: bool):
        if self.correction is None:
            return teacher
        import tempfile
        from pathlib import Path

        from prunetune.loop.teaching import correct_teacher

        with tempfile.TemporaryDirectory(prefix="prunetune-correct-") as work:
            return correct_teacher(teacher, tok, self.correction, self.args.data or "arith", 0,
                                   work_dir=Path(work), progress=progress).eval()

    def records(self, teacher, tok, *, progress: bool) -> list[dict]:
        from prunetune.loop.teaching import prompt_records, teacher_records

        if self.data is None:
            return prompt_records(self.prompts, tok, self.task_options, self.args.count)
        return teacher_records(lambda: teacher, tok, self.prompts, self.data, self.cache, self.task_options,
                               self.args.count, progress=progress)


def _teaching_options(args):
    """The teacher options the flags ask for, or None (then --data / --task as before)."""
    from prunetune.errors import UserError
    from prunetune.recovery.teacher_data import PromptsConfig, TeacherCorrectionConfig, TeacherDataConfig

    if args.teacher_solutions and not args.prompts:
        raise UserError("--teacher-solutions needs --prompts SRC (the prompts the teacher solves)")
    if (args.rejection or args.cache) and not args.teacher_solutions:
        raise UserError("--rejection and --cache go with --teacher-solutions")
    if args.count < 1:
        raise UserError("--count must be >= 1")
    if not (args.prompts or args.correct_teacher):
        return None
    if args.correct_teacher is not None and args.correct_teacher < 1:
        raise UserError("--correct-teacher must be >= 1 steps")
    task_options: dict = {}
    for item in args.task_option:
        key, sep, value = item.partition("=")
        task, dot, opt = key.partition(".")
        if not sep or not dot:
            raise UserError(f"--task-option '{item}': give TASK.KEY=VALUE, e.g. products.max_digits=1")
        from prunetune.commands.taskflags import _parse_value

        task_options.setdefault(task, {})[opt] = _parse_value(value)
    prompts = PromptsConfig(sources=list(args.prompts)) if args.prompts else None
    data = TeacherDataConfig(rejection=args.rejection, max_new_tokens=args.max_new_tokens) if args.teacher_solutions else None
    correction = (TeacherCorrectionConfig(config={"max_steps": args.correct_teacher})
                  if args.correct_teacher else None)
    if prompts is None and args.method not in ("distill", "onpolicy"):
        raise UserError("--correct-teacher corrects a teacher: --method distill / onpolicy or --teacher-solutions")
    return _Teaching(args, prompts, data, correction, task_options)
