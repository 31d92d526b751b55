"""`prunetune reference build|eval`: rebuild the project-made reference model, or score the shipped one."""


def register(sub):
    p = sub.add_parser(
        "reference", help="build the reference arithmetic model from scratch, or evaluate the shipped one"
    )
    actions = p.add_subparsers(dest="action", required=True, parser_class=type(p))
    b = actions.add_parser(
        "build", help="train the reference model from scratch on generated arith problems (CPU)"
    )
    b.add_argument("--out", default="runs/reference", help="output checkpoint directory (must not exist)")
    b.add_argument(
        "--steps", type=int, default=3000, help="AdamW steps (the shipped model: 3000 steps of 48 problems)"
    )
    b.add_argument("--seed", type=int, default=0, help="seed for data, tokenizer and initialisation")
    b.add_argument("--batch-size", type=int, default=48, help="problems per optimizer step")
    b.add_argument("--learning-rate", type=float, default=3e-3, help="peak AdamW learning rate")
    b.add_argument("--warmup-steps", type=int, default=50, help="linear warm-up steps before the cosine decay")
    b.add_argument(
        "--length-buckets",
        type=int,
        default=0,
        help="batch problems of similar length within windows of N batches (less padding; 0 = off)",
    )
    b.add_argument("--device", default="cpu", help="cpu or cuda (a GPU build is fast but not bit-identical)")
    b.set_defaults(handler=run_build)
    e = actions.add_parser("eval", help="exact match of a reference-format model on held-out arith problems")
    e.add_argument(
        "--model", default="reference", help="checkpoint directory (default: the shipped reference)"
    )
    e.add_argument("--n", type=int, default=1000, help="number of held-out test problems")
    e.set_defaults(handler=run_eval)


def run_build(args) -> int:
    from prunetune.builtin.reference import build
    from prunetune.errors import UserError

    for flag, value, low in (
        ("--steps", args.steps, 1),
        ("--batch-size", args.batch_size, 1),
        ("--warmup-steps", args.warmup_steps, 0),
        ("--length-buckets", args.length_buckets, 0),
    ):
        if value < low:
            raise UserError(f"{flag} must be at least {low}, got {value}")
    if not args.learning_rate > 0:
        raise UserError(f"--learning-rate must be positive, got {args.learning_rate}")
    card = build(
        args.out,
        steps=args.steps,
        seed=args.seed,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        length_buckets=args.length_buckets,
        device=args.device,
    )
    print(
        f"wrote {args.out}: exact match {card['accuracy']:.3f} on {card['eval_n']} held-out problems, "
        f"{card['params']:,} parameters, {card['train_wall_time_s']:.0f} s of training"
    )
    return 0


def run_eval(args) -> int:
    from prunetune.builtin import arith
    from prunetune.builtin.reference import DATA_OPTIONS, EVAL_SEED, exact_match
    from prunetune.checkpoint import load_model
    from prunetune.errors import UserError

    if args.n < 1:
        raise UserError(f"--n must be at least 1, got {args.n}")
    model, tok = load_model(args.model)
    records = arith.generate_problems(args.n, split="test", seed=EVAL_SEED, **DATA_OPTIONS)
    acc = exact_match(model, tok, records, progress=True)
    print(f"{args.model}: exact match {acc:.3f} on {args.n} held-out arith problems")
    return 0
