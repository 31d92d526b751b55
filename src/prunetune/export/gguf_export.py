"""A checkpoint as one GGUF file (llama.cpp, Ollama, LM Studio), written by llama.cpp's own tools.

The converter is llama.cpp's `convert_hf_to_gguf.py`, pinned: the copy vendored in the llama-cpp-python
0.3.36 source distribution, with the gguf-py it was written against. It is maintained with llama.cpp and
knows every family's tensor names, the q/k permutation Llama needs, the tokenizer's pre-tokenizer type (by
hashing the tokenizer's output), tied embeddings, and reads an explicit `head_dim` (written as
`attention.key_length` / `value_length`) and per-family RoPE settings from config.json, which is what
pruning changes. A hand-written gguf-py writer would have to re-learn all of that per family, so we run it.
It writes f32 / f16 / bf16 / q8_0; every other type (Q4_0 ... Q6_K, the K-quants) is made from an f32 GGUF
by llama.cpp's quantizer (`llama_model_quantize`, through the llama-cpp-python binding built from the
same source).

Where the tools are: a directory made by `make gguf-env` (default `.venv-gguf` beside the package's source
tree, or PRUNETUNE_GGUF_ENV): `llama.cpp/` (converter, conversion/, gguf-py/), `convert-site/` (the
converter's one import prunetune lacks: sentencepiece) and a venv (`bin/python`) with llama-cpp-python. The
converter runs under this Python (torch, transformers, safetensors: the libraries that wrote the model);
the quantizer and any llama.cpp inference run in that venv through llama_cpp_worker.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from prunetune.errors import UserError, did_you_mean

ENV = "PRUNETUNE_GGUF_ENV"
WORKER = Path(__file__).with_name("llama_cpp_worker.py")
SETUP_HINT = f"run `make gguf-env` in prunetune's source tree (or set {ENV} to a directory it made)"

CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
"""What llama.cpp's converter writes itself."""
QUANTIZER_TYPES = ("q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m",
                   "q5_k_s", "q5_k_m", "q6_k")
"""What llama.cpp's quantizer makes from the f32 GGUF (its LLAMA_FTYPE_MOSTLY_<TYPE>)."""
OUTTYPES = CONVERTER_TYPES + QUANTIZER_TYPES

GGUF_ARCH = {
    "llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma2": "gemma2",
    "gemma3_text": "gemma3", "phi3": "phi3", "olmo2": "olmo2", "smollm3": "smollm3", "granite": "granite",
    "mixtral": "llama", "olmoe": "olmoe", "qwen2_moe": "qwen2moe", "qwen3_moe": "qwen3moe",
}
"""prunetune family -> the llama.cpp architecture the pinned converter writes it as (every family we prune)."""
SENTENCEPIECE_FAMILIES = {"gemma2": "Gemma 2", "phi3": "Phi-3"}
"""Families whose converter reads the vocabulary from a SentencePiece tokenizer.model (their releases ship one)."""


def block_size(outtype: str) -> int:
    """Weights per quantization block along a row (rows that do not fit fall back to another type)."""
    if outtype in ("f32", "f16", "bf16"):
        return 1
    return 256 if outtype.endswith(("_k", "_k_s", "_k_m", "_k_l")) else 32


@dataclass(frozen=True)
class Tools:
    root: Path

    @property
    def converter(self) -> Path:
        return self.root / "llama.cpp" / "convert_hf_to_gguf.py"

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def has_quantizer(self) -> bool:
        return (self.root / ".installed").is_file() and self.python.is_file()

    def converter_env(self) -> dict:
        paths = [self.root / "llama.cpp" / "gguf-py", self.root / "llama.cpp", self.root / "convert-site"]
        return {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in paths), "NO_LOCAL_GGUF": "1"}


def find_tools() -> Tools | None:
    """The GGUF tools directory if there is one (PRUNETUNE_GGUF_ENV, else `.venv-gguf` in the source tree)."""
    given = os.environ.get(ENV)
    if given:
        return Tools(Path(given))
    here = Path(__file__).resolve().parents[3] / ".venv-gguf"  # src/prunetune/export/gguf_export.py -> the tree
    return Tools(here) if (here / "llama.cpp" / "convert_hf_to_gguf.py").is_file() else None


def tools_for(outtype: str) -> Tools:
    """The tools that can write `outtype`, or a one-line UserError saying what is missing and how to get it."""
    tools = find_tools()
    if tools is None or not tools.converter.is_file():
        where = f" ({ENV}='{os.environ[ENV]}' has no llama.cpp/convert_hf_to_gguf.py)" if os.environ.get(ENV) else ""
        raise UserError(f"GGUF export needs llama.cpp's converter{where}: {SETUP_HINT}")
    if outtype in QUANTIZER_TYPES and not tools.has_quantizer():
        raise UserError(
            f"--outtype {outtype} needs llama.cpp's quantizer, which is not built in '{tools.root}' (the converter "
            f"alone writes {', '.join(CONVERTER_TYPES)}): {SETUP_HINT}"
        )
    return tools


def check_outtype(outtype: str, flag: str = "--outtype") -> str:
    t = outtype.lower()
    if t not in OUTTYPES:
        raise UserError(f"{flag}: unknown GGUF type '{outtype}'{did_you_mean(t, OUTTYPES)}; llama.cpp's tools "
                        f"write {', '.join(OUTTYPES)}")
    return t


def check_model(model: str | os.PathLike) -> tuple[Path, dict]:
    """The checkpoint directory and its config.json, checked to be a family llama.cpp's converter takes."""
    from prunetune.checkpoint import checkpoint_dir, model_type

    path = checkpoint_dir(model)
    if path is None:
        raise UserError(f"'{model}' is built in code and has no checkpoint directory: save it first "
                        "(e.g. prunetune prune ... --out DIR) and export that")
    family = model_type(path)
    if not any(path.glob("*.safetensors")):
        raise UserError(f"'{path}' is not a model checkpoint (no *.safetensors weights)")
    cfg = json.loads((path / "config.json").read_text())
    if family not in GGUF_ARCH:
        raise UserError(f"llama.cpp has no GGUF architecture for family '{family}'; exportable: "
                        f"{', '.join(GGUF_ARCH)}")
    if family in SENTENCEPIECE_FAMILIES and not (path / "tokenizer.model").is_file():
        raise UserError(f"llama.cpp's converter reads {SENTENCEPIECE_FAMILIES[family]}'s vocabulary from a "
                        f"SentencePiece tokenizer.model, which '{path}' lacks: copy the original model's "
                        "tokenizer.model into it")
    dense_layers = cfg.get("mlp_only_layers") or (cfg.get("decoder_sparse_step", 1) or 1) > 1
    if family in ("qwen2_moe", "qwen3_moe") and dense_layers:
        raise UserError(f"'{path}' mixes dense and MoE layers (mlp_only_layers / decoder_sparse_step), which "
                        f"llama.cpp's {GGUF_ARCH[family]} cannot hold: every layer must be sparse")
    return path, cfg


def row_warning(cfg_path: Path, outtype: str) -> str | None:
    """What llama.cpp will store in another type because a row length does not fit `outtype`'s blocks."""
    from transformers import AutoConfig

    from prunetune.models.serving import gguf_row_issues
    from prunetune.models.shape import ModelShape

    block = block_size(outtype)
    if block == 1:
        return None
    issues = gguf_row_issues(ModelShape.from_config(AutoConfig.from_pretrained(cfg_path)), block)
    if not issues:
        return None
    instead = "Q5_0 / Q5_1 / Q8_0 (by type)" if block == 256 else "F16"
    return (f"{outtype}: {', '.join(issues)} not a multiple of {block}: llama.cpp writes those tensors as "
            f"{instead} instead (a smaller saving); schedule.round_to={block} keeps pruned MLP widths fit")


def tensor_types(path: Path) -> tuple[str, Counter]:
    """(general.architecture, tensor count by GGUF type) of a written file, read with gguf-py."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    field = reader.get_field("general.architecture")
    arch = bytes(field.parts[field.data[0]]).decode() if field is not None else "?"
    return arch, Counter(t.tensor_type.name for t in reader.tensors)


def run_worker(jobs: list[dict], tools: Tools | None = None, *, timeout: float = 3600) -> list[dict]:
    """Run llama_cpp_worker.py jobs (quantize, score, decode speed) in the GGUF venv; results in order."""
    tools = tools or tools_for(QUANTIZER_TYPES[0])
    with tempfile.TemporaryDirectory(prefix="prunetune-llama-cpp-") as tmp:
        req, res = Path(tmp) / "request.json", Path(tmp) / "result.json"
        req.write_text(json.dumps({"jobs": jobs}))
        done = subprocess.run([str(tools.python), str(WORKER), str(req), str(res)], capture_output=True,
                              text=True, timeout=timeout)
        if done.returncode != 0 or not res.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"llama.cpp worker failed (exit {done.returncode}): {tail[0]}")
        return json.loads(res.read_text())["results"]


def _convert(tools: Tools, model_dir: Path, out: Path, outtype: str) -> None:
    cmd = [sys.executable, str(tools.converter), str(model_dir), "--outfile", str(out), "--outtype", outtype]
    done = subprocess.run(cmd, capture_output=True, text=True, env=tools.converter_env())
    if done.returncode != 0 or not out.is_file():
        lines = [ln for ln in (done.stderr + done.stdout).strip().splitlines() if ln.strip()]
        errors = [ln for ln in lines if "Error" in ln or ln.startswith("ERROR")]
        raise UserError(f"llama.cpp's converter refused '{model_dir}': {(errors or lines or ['no output'])[-1].strip()}")


def export_gguf(model: str | os.PathLike, out: str | os.PathLike, outtype: str = "f16", *,
                replace: bool = False, log=print) -> dict:
    """Write `model` (a checkpoint directory) as the GGUF file `out`; everything is checked before the
    first write and the file appears whole or not at all. Returns {path, outtype, arch, bytes, types}."""
    from prunetune.io import check_output_path

    outtype = check_outtype(outtype)
    out = check_output_path(out, "--gguf", may_exist=replace)
    model_dir, _ = check_model(model)
    tools = tools_for(outtype)
    warning = row_warning(model_dir, outtype)
    if warning and log:
        log(f"warning: {warning}")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    try:
        if outtype in CONVERTER_TYPES:
            _convert(tools, model_dir, stage / "model.gguf", outtype)
        else:
            _convert(tools, model_dir, stage / "f32.gguf", "f32")
            [res] = run_worker([{"op": "quantize", "input": str(stage / "f32.gguf"), "output": str(stage / "model.gguf"),
                                 "type": outtype}], tools)
            if "error" in res:
                raise UserError(f"llama.cpp's quantizer failed on '{model_dir}' ({outtype}): {res['error']}")
        arch, types = tensor_types(stage / "model.gguf")
        size = (stage / "model.gguf").stat().st_size
        os.replace(stage / "model.gguf", out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return {"path": str(out), "outtype": outtype, "arch": arch, "bytes": size, "types": dict(types.most_common()),
            "warning": warning}
