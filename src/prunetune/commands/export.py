"""`prunetune export MODEL --gguf OUT.gguf [--outtype q8_0]`: a checkpoint as a GGUF file for llama.cpp / Ollama."""


def register(sub):
    from prunetune.export.gguf_export import OUTTYPES

    p = sub.add_parser("export", help="write a checkpoint as a GGUF file (llama.cpp, Ollama, LM Studio) with "
                       "llama.cpp's own converter and quantizer")
    p.add_argument("model", help="a checkpoint directory (e.g. a run's final/ or family/keep_0.50/)")
    p.add_argument("--gguf", required=True, help="the .gguf file to write (must not exist)")
    p.add_argument("--outtype", default="f16", type=str.lower,
                   help=f"GGUF weight type (default f16): {', '.join(OUTTYPES)}")
    p.set_defaults(handler=run)


def run(args) -> int:
    from prunetune.export.gguf_export import export_gguf

    res = export_gguf(args.model, args.gguf, args.outtype)
    types = ", ".join(f"{n} {t}" for t, n in res["types"].items())
    print(f"wrote {res['path']} ({res['arch']}, {res['outtype']}, {res['bytes'] / 2**20:.1f} MiB; tensors: {types})")
    return 0
