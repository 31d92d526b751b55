"""`prunetune plan RECIPE [--gpus N --gpu h200]`: the iteration table from the config alone (no weights
loaded), and with --gpus / --gpu what each iteration costs in GPU-hours and memory per GPU."""

from prunetune.errors import UserError


def register(sub):
    p = sub.add_parser("plan", help="print what each iteration removes: params, widths, heads, layers, FLOPs; "
                       "with --gpus/--gpu its GPU-hours and memory per GPU")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--gpus", type=int, default=None, help="GPUs the run uses (default 1 with --gpu)")
    p.add_argument("--gpu", default=None, help="a100 | h100 | h200 (default h200 with --gpus)")
    p.add_argument("--mfu", type=float, default=None, help="training model-FLOPs utilisation (default: measured)")
    p.add_argument("--gen-speedup", type=float, default=1.0,
                   help="generation throughput over the measured HF decode rate (vLLM is faster)")
    p.add_argument("--gen-fill", type=float, default=1.0,
                   help="share of the generation budget a completion uses on average (1: upper bound)")
    p.add_argument("--tokens-per-record", type=int, default=None,
                   help="tokens per training record for one-pass recoveries (default: config.max_length)")
    p.add_argument("--eval-examples", type=int, default=500, help="examples per task when evaluation.limit is null")
    p.add_argument("--strict", action="store_true", help="exit 2 when a plan will not fit in GPU memory")
    p.set_defaults(handler=run)


def _cost_flags(args):
    """The cost flags checked (one line naming the flag), or None when no cost was asked for."""
    from prunetune.loop.cost import Assumptions, gpu_spec

    if args.gpus is None and args.gpu is None:
        return None
    if args.gpu is not None and not args.gpu.strip():
        raise UserError("--gpu: the GPU name is empty (a100 | h100 | h200)")
    gpus = 1 if args.gpus is None else args.gpus
    if gpus < 1:
        raise UserError(f"--gpus must be at least 1, got {gpus}")
    gpu = gpu_spec(args.gpu or "h200")
    for flag, value, ok in (
        ("--mfu", args.mfu, args.mfu is None or 0 < args.mfu <= 1),
        ("--gen-speedup", args.gen_speedup, args.gen_speedup > 0),
        ("--gen-fill", args.gen_fill, 0 < args.gen_fill <= 1),
        ("--tokens-per-record", args.tokens_per_record, args.tokens_per_record is None or args.tokens_per_record >= 1),
        ("--eval-examples", args.eval_examples, args.eval_examples >= 1),
    ):
        if not ok:
            raise UserError(f"{flag}: {value} is out of range (see prunetune plan --help)")
    a = Assumptions(gen_speedup=args.gen_speedup, gen_fill=args.gen_fill, tokens_per_record=args.tokens_per_record,
                    eval_examples=args.eval_examples)
    if args.mfu is not None:
        a.mfu = args.mfu
    return gpus, gpu, a


def run(args) -> int:
    from prunetune.loop import load_recipe, validate_recipe
    from prunetune.loop.budget import planned_steps
    from prunetune.models.serving import QUANT_GROUP, width_issues
    from prunetune.recovery import resolve_config
    from prunetune.table import format_table

    cost = _cost_flags(args)
    recipe = load_recipe(args.recipe, args.overrides)
    shape, steps, shapes = validate_recipe(recipe)
    dense_ne, dense_all, dense_flops = shape.non_embedding_params(), shape.params(), shape.flops_per_token()
    budget = "-"
    if recipe.recovery.method != "none":
        cfg = resolve_config(recipe.recovery.method, recipe.recovery.config, "recovery.config")
        mult = recipe.iterations if recipe.one_shot else 1
        per = (
            f"{cfg.max_steps * mult} steps"
            if cfg.max_steps
            else f"{cfg.max_tokens * mult:,} tokens"
            if cfg.max_tokens
            else "1 pass"
        )
        budget = f"{recipe.recovery.method}: {per} on {recipe.recovery.chunk_size * mult} records"
    head = [
        "iter",
        "-mlp",
        "-kv",
        "-layers",
        "intermediate",
        "heads/kv",
        "layers",
        "hidden",
        "non-emb params",
        "kept",
        "params",
        "GFLOPs/token",
        "serving",
        "recovery",
    ]
    tp = recipe.schedule.tensor_parallel
    if recipe.recovery.total_steps and recipe.recovery.method != "none":
        budget = f"{recipe.recovery.method}: {recipe.recovery.allocation} share of {recipe.recovery.total_steps} steps"
    planned = None if recipe.one_shot or recipe.schedule.shape == "damage" else planned_steps(recipe.recovery, len(steps))

    def serving(sh) -> str:
        return "!" if width_issues(sh.intermediate_size, sh.num_attention_heads, sh.num_key_value_heads, tp) else "ok"

    rows = [
        [
            "dense",
            "",
            "",
            "",
            str(shape.intermediate_size),
            f"{shape.num_attention_heads}/{shape.num_key_value_heads}",
            str(shape.num_hidden_layers),
            str(shape.hidden_size),
            f"{dense_ne:,}",
            "100.0%",
            f"{dense_all:,}",
            f"{dense_flops / 1e9:.4g}",
            serving(shape),
            "",
        ]
    ]
    for i, (st, sh) in enumerate(zip(steps, shapes[1:]), 1):
        rows.append(
            [
                str(i),
                f"~{st.mlp_neurons}" if st.by_damage else str(st.mlp_neurons),
                str(st.kv_groups),
                str(st.layers),
                str(sh.intermediate_size),
                f"{sh.num_attention_heads}/{sh.num_key_value_heads}",
                str(sh.num_hidden_layers),
                str(sh.hidden_size),
                f"{sh.non_embedding_params():,}",
                f"{sh.non_embedding_params() / dense_ne:.1%}",
                f"{sh.params():,}",
                f"{sh.flops_per_token() / 1e9:.4g}",
                serving(sh),
                f"{recipe.recovery.method}: {planned[i - 1]} of {recipe.recovery.total_steps} steps" if planned else budget,
            ]
        )
    if shape.moe_layers:  # MoE: experts, expert width and the parameters a token is routed through
        active0 = shape.active_non_embedding_params()
        head[4:4] = ["-experts", "-expert neurons", "experts", "expert width", "active non-emb", "active kept"]
        for row, st, sh in zip(rows, [None, *steps], shapes):
            row[4:4] = [
                "" if st is None else str(st.experts),
                "" if st is None else str(st.expert_neurons) + (f"/{st.shared_expert_neurons}s" if st.shared_expert_neurons else ""),
                str(sh.num_experts),
                str(sh.moe_intermediate_size),
                f"{sh.active_non_embedding_params():,}",
                f"{sh.active_non_embedding_params() / active0:.1%}",
            ]
    print(
        f"{recipe.model} ({shape.model_type}){' one-shot' if recipe.one_shot else ''}: "
        + (
            f"target: keep {recipe.target.keep:.0%} of {'active ' if recipe.target.count == 'active' else ''}"
            "non-embedding parameters"
            if recipe.target.keep and not recipe.schedule.mlp_neurons_per_iteration
            else "explicit amounts per iteration"
        )
    )
    print(format_table(head, rows, align="r" * len(head)))
    if any(st.by_damage for st in steps):
        print(f"~N: decided as the run goes, the largest cut whose held-out loss rise stays under "
              f"{recipe.schedule.max_damage} nats/token; the last MLP iteration takes what is left")
    issues = width_issues(shapes[-1].intermediate_size, shapes[-1].num_attention_heads, shapes[-1].num_key_value_heads, tp)
    if issues:
        print(
            f"serving: the final shape will not shard over tensor_parallel={tp} or run 4-bit kernels: "
            + "; ".join(issues)
            + f" (schedule.round_to={QUANT_GROUP * tp} keeps every MLP width servable)"
        )
    from prunetune.models.serving import KQUANT_BLOCK, gguf_row_issues

    rows_off = gguf_row_issues(shapes[-1])
    if rows_off:
        print(f"gguf: K-quants (q4_k_m, q5_k_m, q6_k) need rows in multiples of {KQUANT_BLOCK}; the final shape's "
              f"{', '.join(rows_off)} will fall back to Q5_0 / Q5_1 / Q8_0 (schedule.round_to={KQUANT_BLOCK} fits "
              "pruned MLP widths)")
    final = shapes[-1]
    print(
        f"final: {final.non_embedding_params() / dense_ne:.1%} of non-embedding parameters, "
        f"{final.params() / dense_all:.1%} of all, {final.flops_per_token() / dense_flops:.1%} of FLOPs/token"
        + (f", {final.active_non_embedding_params() / shape.active_non_embedding_params():.1%} of active "
           "non-embedding parameters" if shape.moe_layers else "")
    )
    return 0 if cost is None else _print_cost(recipe, shapes, *cost, strict=args.strict)


def _print_cost(recipe, shapes, gpus, gpu, assumptions, *, strict: bool) -> int:
    import sys

    from prunetune.loop.plan_cost import describe, iteration_costs
    from prunetune.recovery import resolve_config

    r = recipe.recovery
    cfg = resolve_config(r.method, r.config, "recovery.config") if r.method != "none" else None
    costs = iteration_costs(recipe, shapes, gpus, gpu, assumptions)
    text, warnings = describe(recipe, cfg, costs, gpus, gpu, assumptions)
    print()
    print(text)
    for w in warnings:
        print(w, file=sys.stderr)
    if warnings and strict:
        raise UserError(f"--strict: the plan does not fit in {gpu.memory / 1e9:.0f} GB per GPU")
    return 0
