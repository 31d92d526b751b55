"""Loading and atomically saving stock Hugging Face checkpoints, with the prunetune history beside them."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import torch

from prunetune.errors import UserError
from prunetune.io import atomic_dir, atomic_write_json

HISTORY_FILE = "prunetune_history.json"


@contextlib.contextmanager
def quiet_hf_progress():
    """Hide transformers' per-file loading/saving bars (noise around our own progress and errors)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_dtype(name: str | torch.dtype | None) -> torch.dtype:
    if name is None:
        return torch.float32
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise UserError(f"unknown dtype '{name}'; choose from {', '.join(DTYPES)}")
    return DTYPES[name]


def resolve_model_path(name: str | os.PathLike) -> str:
    """A built-in name (`reference`, `tiny-random-<family>`) stays as is; a path must be a checkpoint dir."""
    name = str(name)
    if name == "reference" or name.startswith("tiny-random-"):
        return name
    p = Path(name)
    if not p.is_dir():
        raise UserError(f"model directory '{name}' does not exist")
    if not (p / "config.json").is_file():
        raise UserError(f"'{name}' is not a model checkpoint (no config.json)")
    return str(p)


def load_model(name: str | os.PathLike, dtype=None, *, with_tokenizer: bool = True):
    """Load (model, tokenizer) from a checkpoint dir or a built-in name; bad input is a UserError."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prunetune.models import get_adapter

    dtype = parse_dtype(dtype)
    name = resolve_model_path(name)
    if name.startswith("tiny-random-"):
        from prunetune.models.tiny import tiny_model

        return tiny_model(name[len("tiny-random-") :], dtype=dtype)
    if name == "reference":
        from prunetune.reference import reference_dir

        name = str(reference_dir())
    try:
        cfg = json.loads((Path(name) / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"'{name}/config.json' is unreadable: {e}") from None
    get_adapter(type("C", (), {"model_type": cfg.get("model_type")})())  # family check before loading weights
    try:
        with quiet_hf_progress():
            model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
    except Exception as e:  # noqa: BLE001 - safetensors/OS/shape errors all mean an unusable checkpoint
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load model from '{name}': {first}") from None
    model.eval()
    tok = None
    if with_tokenizer:
        try:
            tok = AutoTokenizer.from_pretrained(name)
        except (OSError, ValueError) as e:
            raise UserError(f"cannot load tokenizer from '{name}': {str(e).splitlines()[0]}") from None
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
    return model, tok


def read_history(path: str | os.PathLike) -> list[dict]:
    f = Path(path) / HISTORY_FILE
    return json.loads(f.read_text()) if f.is_file() else []


def save_checkpoint(
    model,
    tokenizer,
    out: str | os.PathLike,
    *,
    history: list[dict] | None = None,
    extra_json: dict[str, object] | None = None,
    replace: bool = False,
) -> Path:
    """Write model (safetensors + config), tokenizer, history and extra JSON files atomically to `out`."""
    out = Path(out)
    if out.exists() and not replace:
        raise UserError(f"output directory '{out}' already exists")
    with atomic_dir(out, replace=replace) as tmp, quiet_hf_progress():
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / HISTORY_FILE, history or [])
        for fname, obj in (extra_json or {}).items():
            atomic_write_json(tmp / fname, obj)
    return out


def count_params(model) -> dict:
    """Total and non-embedding parameters (embeddings and an untied lm_head excluded) of a live model."""
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    emb_n = emb.numel()
    if head is not None and head.weight.data_ptr() != emb.data_ptr():
        emb_n += head.weight.numel()
    return {"params": total, "non_embedding_params": total - emb_n}
