"""`prunetune inspect MODEL_DIR`: family, parameters, widths, heads, layers, and pruning history."""


def register(sub):
    p = sub.add_parser("inspect", help="print a model's family, parameter count, widths, heads and layers")
    p.add_argument("model", help="checkpoint directory or built-in name (reference, tiny-random-<family>)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from prunetune.checkpoint import count_params, load_model, read_history, resolve_model_path
    from prunetune.models.shape import ModelShape
    from prunetune.table import format_table

    model, _ = load_model(args.model, with_tokenizer=False)
    shape = ModelShape.from_config(model.config)
    counts = count_params(model)
    rows = [
        ("family", shape.model_type),
        ("parameters", f"{counts['params']:,}"),
        ("non-embedding parameters", f"{counts['non_embedding_params']:,}"),
        ("hidden_size", shape.hidden_size),
        ("intermediate_size", shape.intermediate_size),
        ("num_hidden_layers", shape.num_hidden_layers),
        ("num_attention_heads", shape.num_attention_heads),
        ("num_key_value_heads", shape.num_key_value_heads),
        ("head_dim", shape.head_dim),
        ("tie_word_embeddings", shape.tie_word_embeddings),
        ("FLOPs/token (ctx 128)", f"{shape.flops_per_token():,}"),
    ]
    if shape.moe_layers:
        rows[3:3] = [("active parameters (top-k experts)", f"{shape.active_params():,}")]
        rows += [
            ("MoE layers", f"{len(shape.moe_layers)} of {shape.num_hidden_layers}"),
            ("experts (per MoE layer)", shape.num_experts),
            ("experts per token", shape.experts_per_tok),
            ("expert width", shape.moe_intermediate_size),
        ] + ([("shared expert width", shape.shared_expert_intermediate_size)]
             if shape.shared_expert_intermediate_size else [])
    path = resolve_model_path(args.model)
    if not path.startswith("tiny-random-") and path != "reference":
        rows.append(("pruning steps in history", len(read_history(path))))
    print(format_table(None, rows))
    return 0
