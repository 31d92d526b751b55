"""`prunetune plan RECIPE`: the iteration table from the config alone (no weights loaded)."""


def register(sub):
    p = sub.add_parser("plan", help="print what each iteration removes: params, widths, heads, layers, FLOPs")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*")
    p.set_defaults(handler=run)


def run(args) -> int:
    from prunetune.loop import load_recipe, validate_recipe
    from prunetune.models.serving import QUANT_GROUP, width_issues
    from prunetune.recovery import resolve_config
    from prunetune.table import format_table

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
                budget,
            ]
        )
    print(
        f"{recipe.model} ({shape.model_type}){' one-shot' if recipe.one_shot else ''}: "
        + (
            f"target: keep {recipe.target.keep:.0%} of non-embedding parameters"
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
    final = shapes[-1]
    print(
        f"final: {final.non_embedding_params() / dense_ne:.1%} of non-embedding parameters, "
        f"{final.params() / dense_all:.1%} of all, {final.flops_per_token() / dense_flops:.1%} of FLOPs/token"
    )
    return 0
