"""`prunetune prune MODEL --out OUT ...`: one scored, uniform pruning step, written as a stock checkpoint."""


def register(sub):
    p = sub.add_parser("prune", help="remove MLP neurons, KV groups, layers and/or MoE experts from a model (one step)")
    p.add_argument("model", help="checkpoint directory or built-in name (reference, tiny-random-<family>)")
    p.add_argument("--out", required=True, help="output checkpoint directory (must not exist)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--mlp-fraction", type=float, help="fraction of every layer's MLP width to remove")
    g.add_argument("--mlp-neurons", type=int, help="MLP neurons to remove from every layer")
    p.add_argument("--kv-groups", type=int, default=0, help="KV groups to remove from every layer")
    lg = p.add_mutually_exclusive_group()
    lg.add_argument("--layers", type=int, default=0, help="number of lowest-scoring layers to remove")
    lg.add_argument("--layer-ids", help="comma-separated layer ids to remove, e.g. 3,7")
    p.add_argument(
        "--hidden-fraction", type=float, help="fraction of the hidden size (residual-stream channels) to remove"
    )
    p.add_argument("--importance", default="activation", help="MLP scorer (see `prunetune ls -v`)")
    p.add_argument(
        "--importance-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the MLP scorer, e.g. order=index or top_n=0.5 for ptl (see `prunetune ls -v`)",
    )
    p.add_argument("--experts", type=int, default=0, help="routed experts to remove from every MoE layer")
    p.add_argument("--expert-neurons", type=int, default=0, help="neurons to remove from every routed expert")
    p.add_argument("--shared-expert-neurons", type=int, default=0, help="shared-expert neurons to remove (Qwen2-MoE)")
    p.add_argument("--expert-importance", default="reap", help="expert scorer: reap, frequency, random")
    p.add_argument("--expert-neuron-importance", default="activation", help="expert-neuron scorer")
    p.add_argument("--kv-importance", default="activation", help="KV-group scorer")
    p.add_argument("--layer-importance", default="block_influence", help="layer scorer")
    p.add_argument("--hidden-importance", default="activation", help="hidden-channel scorer")
    p.add_argument(
        "--layerwise",
        action="store_true",
        help="score one decoder layer at a time on the GPU (model kept on CPU); forward scorers only",
    )
    p.add_argument(
        "--calibration",
        default="arith",
        help="calibration text: a text source (arith, the default) or a JSONL/txt/parquet/datasets path",
    )
    p.add_argument("--general", help="general-text file protected by the `ptl` scorer")
    p.add_argument("--text-field", default="text", help="JSONL field holding the text")
    p.add_argument("--calibration-samples", type=int, default=64)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--round-to", type=int, default=1, help="remaining MLP width (and hidden size) a multiple of this")
    p.add_argument("--tensor-parallel", type=int, default=1, help="remaining heads/width divisible by this")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=run)


def _layer_ids(text: str | None) -> list[int]:
    from prunetune.errors import UserError

    if not text:
        return []
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--layer-ids must be comma-separated integers, got '{text}'") from None


def run(args) -> int:

    from prunetune.checkpoint import (
        count_params,
        is_builtin,
        load_model,
        model_config,
        read_history,
        resolve_model_path,
        save_checkpoint,
    )
    from prunetune.config import parse_overrides
    from prunetune.data import check_source
    from prunetune.errors import UserError
    from prunetune.io import check_output_path
    from prunetune.models.shape import ModelShape
    from prunetune.pruning.importance.calibration import calibration_inputs
    from prunetune.pruning.plan import Constraints, PruningPlan
    from prunetune.pruning.prune import StepSpec, check_spec, prune_step
    from prunetune.pruning.select import check_hidden_fraction, hidden_count, mlp_count

    check_output_path(args.out, "--out")
    layer_ids = _layer_ids(args.layer_ids)
    src = resolve_model_path(args.model)
    earlier = [] if is_builtin(src) else read_history(src)  # read before the work: it is written at the end
    for flag, low in (("round_to", 1), ("tensor_parallel", 1), ("calibration_samples", 1), ("max_length", 2)):
        if getattr(args, flag) < low:
            raise UserError(f"--{flag.replace('_', '-')} must be at least {low}, got {getattr(args, flag)}")
    if args.kv_groups < 0 or args.layers < 0:
        raise UserError("--kv-groups and --layers must be >= 0")
    moe_units = dict(experts=args.experts, expert_neurons=args.expert_neurons, shared=args.shared_expert_neurons)
    for flag in ("experts", "expert_neurons", "shared_expert_neurons"):
        if getattr(args, flag) < 0:
            raise UserError(f"--{flag.replace('_', '-')} must be >= 0")
    if any(moe_units.values()):  # amounts checked on the config, before any weight loads
        cfg_shape = ModelShape.from_config(model_config(src))
        PruningPlan.amounts(cfg_shape, **moe_units).validate(cfg_shape, Constraints(args.round_to, args.tensor_parallel))
    if args.hidden_fraction is not None:
        check_hidden_fraction(args.hidden_fraction)
    check_source(args.calibration, "--calibration")
    if args.general:
        check_source(args.general, "--general")
    from prunetune.data import calibration_texts

    calibration_texts(args.calibration, field=args.text_field, limit=args.calibration_samples)  # readable?
    if args.general:
        calibration_texts(args.general, field=args.text_field, limit=args.calibration_samples)
    options = parse_overrides(args.importance_option)
    check_spec(
        StepSpec(
            expert_importance=args.expert_importance,
            expert_neuron_importance=args.expert_neuron_importance,
            mlp_importance=args.importance,
            kv_importance=args.kv_importance,
            layer_importance=args.layer_importance,
            hidden_importance=args.hidden_importance,
            mlp_options=options,
            layerwise=args.layerwise,
        )
    )
    model, tok = load_model(src, args.dtype)
    shape = ModelShape.from_config(model.config)
    constraints = Constraints(round_to=args.round_to, tensor_parallel=args.tensor_parallel)
    mlp = 0
    if args.mlp_fraction is not None or args.mlp_neurons is not None:
        mlp = mlp_count(
            shape.intermediate_size,
            fraction=args.mlp_fraction,
            neurons=args.mlp_neurons,
            round_to=args.round_to,
        )
    hidden = 0
    if args.hidden_fraction is not None:
        hidden = hidden_count(shape.hidden_size, args.hidden_fraction, args.round_to)
    spec = StepSpec(
        hidden_channels=hidden,
        hidden_importance=args.hidden_importance,
        mlp_neurons=mlp,
        kv_groups=args.kv_groups,
        layers=args.layers,
        layer_ids=layer_ids,
        mlp_importance=args.importance,
        kv_importance=args.kv_importance,
        layer_importance=args.layer_importance,
        mlp_options=options,
        layerwise=args.layerwise,
        experts=args.experts,
        expert_neurons=args.expert_neurons,
        shared_expert_neurons=args.shared_expert_neurons,
        expert_importance=args.expert_importance,
        expert_neuron_importance=args.expert_neuron_importance,
    )
    if not (spec.mlp_neurons or spec.kv_groups or spec.removes_layers or spec.hidden_channels or any(moe_units.values())):
        raise UserError(
            "nothing to remove: give --mlp-fraction/--mlp-neurons, --kv-groups, --layers/--layer-ids, --hidden-fraction or --experts"
        )
    batches, general = calibration_inputs(
        tok,
        args.calibration,
        args.general,
        field=args.text_field,
        limit=args.calibration_samples,
        max_length=args.max_length,
        seed=args.seed,
    )
    before = count_params(model)
    plan, _ = prune_step(model, spec, batches, general=general, constraints=constraints, seed=args.seed)
    after = count_params(model)
    history = earlier + [plan.to_dict()]
    save_checkpoint(model, tok, args.out, history=history)
    print(
        f"parameters: {before['params']:,} -> {after['params']:,} "
        f"({after['params'] / before['params']:.1%}); non-embedding: {before['non_embedding_params']:,} -> "
        f"{after['non_embedding_params']:,} ({after['non_embedding_params'] / before['non_embedding_params']:.1%})"
    )
    new = ModelShape.from_config(model.config)
    print(
        f"hidden_size {shape.hidden_size} -> {new.hidden_size}; "
        f"intermediate_size {shape.intermediate_size} -> {new.intermediate_size}; "
        f"kv heads {shape.num_key_value_heads} -> {new.num_key_value_heads}; "
        f"layers {shape.num_hidden_layers} -> {new.num_hidden_layers}; wrote {args.out}"
    )
    if shape.moe_layers:
        print(f"experts {shape.num_experts} -> {new.num_experts}; expert width {shape.moe_intermediate_size} -> "
              f"{new.moe_intermediate_size}; active parameters {shape.active_params():,} -> {new.active_params():,}")
    return 0
