"""Loading and atomically saving stock Hugging Face checkpoints, with the prunetune history beside them."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from prunetune.errors import UserError, did_you_mean
from prunetune.io import atomic_dir, atomic_write_json
from prunetune.registry import Registry

HISTORY_FILE = "prunetune_history.json"


@dataclass(frozen=True)
class BuiltinModel:
    """A model known by name: a checkpoint directory shipped in a package, or one built in code."""

    path: Callable[[], Path] | None = None
    """Where the shipped checkpoint directory is."""
    build: Callable[..., tuple] | None = None
    """build(dtype) -> (model, tokenizer), for models made in code."""
    config: Callable[[], object] | None = None
    """The config of a model made in code, without building it."""


MODELS = Registry("built-in model")
"""name -> BuiltinModel, filled by plugins (`prunetune ls` lists the names)."""


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


def is_builtin(name: str | os.PathLike) -> bool:
    return str(name) in MODELS


def resolve_model_path(name: str | os.PathLike) -> str:
    """A built-in model name stays as is; a path must be a checkpoint dir (else a UserError naming it)."""
    name = str(name)
    if is_builtin(name):
        return name
    p = Path(name)
    if not p.is_dir():
        hint = did_you_mean(name, MODELS.names()) if os.sep not in name else ""
        raise UserError(f"model '{name}' does not exist (neither a checkpoint directory nor a built-in model){hint}")
    if not (p / "config.json").is_file():
        raise UserError(f"'{name}' is not a model checkpoint (no config.json)")
    return str(p)


def checkpoint_dir(name: str | os.PathLike) -> Path | None:
    """The directory holding `name`'s files (a built-in model made in code has none)."""
    name = resolve_model_path(name)
    if is_builtin(name):
        entry = MODELS.get(name)
        return entry.path() if entry.path else None
    return Path(name)


def model_config(name: str | os.PathLike):
    """The model's config without its weights (for plans); the family must be one prunetune knows."""
    from transformers import AutoConfig

    path = checkpoint_dir(name)
    if path is None:
        return MODELS.get(str(name)).config()
    model_type(path)
    return AutoConfig.from_pretrained(path)


def model_type(path: Path) -> str:
    """`model_type` from config.json, checked to be a supported family before any weight is read."""
    from prunetune.models import get_adapter

    try:
        cfg = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"'{path}/config.json' is unreadable: {str(e).splitlines()[0]}") from None
    if not isinstance(cfg, dict):
        raise UserError(f"'{path}/config.json' must hold a JSON object")
    get_adapter(type("C", (), {"model_type": cfg.get("model_type")})())
    pickles = [f.name for f in Path(path).iterdir() if f.suffix in (".bin", ".pt", ".pth", ".pkl")]
    if pickles and not any(Path(path).glob("*.safetensors")):
        raise UserError(
            f"'{path}' holds pickle weights ({pickles[0]}), which can run code when loaded; prunetune reads "
            "safetensors only: convert them once where you trust the file (save_pretrained writes safetensors)"
        )
    return cfg["model_type"]


def load_model(name: str | os.PathLike, dtype=None, *, with_tokenizer: bool = True):
    """Load (model, tokenizer) from a checkpoint dir or a built-in name; bad input is a UserError."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = parse_dtype(dtype)
    path = checkpoint_dir(name)
    if path is None:
        return MODELS.get(str(name)).build(dtype=dtype)
    name = str(path)
    model_type(path)  # family check before loading weights
    try:
        with quiet_hf_progress(), _quiet_load_report():
            model, info = AutoModelForCausalLM.from_pretrained(
                name, dtype=dtype, output_loading_info=True, ignore_mismatched_sizes=True
            )
    except Exception as e:  # noqa: BLE001 - safetensors/OS/shape errors all mean an unusable checkpoint
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load model from '{name}': {first}") from None
    bad = weight_problems(info)
    if bad:  # transformers would go on with those weights newly initialized: never prune or train that
        raise UserError(f"cannot load model from '{name}': the checkpoint does not match its config.json ({bad})")
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


def weight_problems(info: dict, shown: int = 3) -> str:
    """The missing, unexpected and mismatched weights in transformers' loading info, named ('' if none)."""
    parts = []
    for label, keys in (("missing", info.get("missing_keys")), ("unexpected", info.get("unexpected_keys")),
                        ("mismatched", info.get("mismatched_keys"))):
        names = sorted(k[0] if isinstance(k, tuple) else str(k) for k in keys or ())
        if names:
            more = f" and {len(names) - shown} more" if len(names) > shown else ""
            parts.append(f"{label}: {', '.join(names[:shown])}{more}")
    return "; ".join(parts)


@contextlib.contextmanager
def _quiet_load_report():
    """transformers prints a multi-line LOAD REPORT for missing keys; prunetune reports them itself."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def read_history(path: str | os.PathLike) -> list[dict]:
    """The checkpoint's pruning history (prunetune_history.json; [] when it has none), checked."""
    from prunetune.io import read_json

    f = Path(path) / HISTORY_FILE
    if not f.is_file():
        return []
    history = read_json(f, kind=list, fix="fix or remove that file (it only records earlier pruning steps)")
    if not all(isinstance(h, dict) for h in history):
        raise UserError(f"'{f}': expected a list of pruning steps (JSON objects); fix or remove that file")
    return history


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
    from prunetune.models.serving import serving_rewrite

    use_cache = getattr(model.config, "use_cache", None)
    if getattr(model.config, "auto_map", None):  # custom code is never copied, so do not point at it
        del model.config.auto_map
    rewrite = serving_rewrite(model)
    with atomic_dir(out, replace=replace) as tmp, quiet_hf_progress():
        model.config.use_cache = True  # an inference default: training turns the cache off, serving wants it
        try:
            if rewrite is None:
                model.save_pretrained(tmp, safe_serialization=True)
            else:
                fields, extra = rewrite
                model.save_pretrained(tmp, safe_serialization=True, state_dict={**model.state_dict(), **extra})
                cfg = json.loads((tmp / "config.json").read_text())
                atomic_write_json(tmp / "config.json", {**cfg, **fields})
        finally:
            model.config.use_cache = use_cache
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
