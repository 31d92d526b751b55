"""The llama.cpp serving check: pruned checkpoints exported to GGUF (f32) by llama.cpp's own converter load in
llama.cpp itself with transformers' greedy tokens and log-probs.

Models: tiny random ones with SmolLM2's real tokenizer (the converter identifies the pre-tokenizer by hashing
the tokenizer, so toy tokenizers are refused), pruned by one step (MLP neurons + a KV group + a layer), and
one hidden-pruned. Needs `make gguf-env` (which `make test` builds); skipped without it, failed under CI.
"""

import os

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from prunetune.builtin.gguf import resolve_gguf
from prunetune.builtin.tiny import tiny_config
from prunetune.checkpoint import save_checkpoint
from prunetune.export.gguf_export import export_gguf, find_tools, run_worker, tensor_types
from prunetune.pruning.importance import calibration_batches
from prunetune.pruning.prune import StepSpec, prune_step

pytestmark = [pytest.mark.slow, pytest.mark.serving]
PROMPTS = ["Question: Tom has 3 apples and buys 5 more. How many apples?\nAnswer:", "def add(a, b):\n    return"]
TOLERANCE = 1e-3  # nats per token, f32 on both sides
NEW_TOKENS = 8
CASES = {  # name -> (family, step)
    "llama": ("llama", StepSpec(mlp_neurons=16, kv_groups=1, layer_ids=[1])),
    "qwen3": ("qwen3", StepSpec(mlp_neurons=16, kv_groups=1, layer_ids=[1])),
    "llama hidden": ("llama", StepSpec(hidden_channels=32, mlp_neurons=16)),
}


def _tools():
    tools = find_tools()
    if tools is None or not tools.has_quantizer():
        if os.environ.get("CI"):
            pytest.fail("no GGUF env: `make test` builds it with `make gguf-env`")
        pytest.skip("no GGUF env with llama.cpp built (make gguf-env)")
    return tools


def _pruned(family, spec, out, tok):
    cfg = tiny_config(family, vocab_size=len(tok), hidden_size=128, head_dim=32, num_attention_heads=4,
                      num_key_value_heads=2, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    prune_step(model, spec, calibration_batches(tok, PROMPTS * 2), progress=False)
    save_checkpoint(model, tok, out)
    return model


@torch.no_grad()
def _hf(model, ids):
    logits = model(torch.tensor([ids])).logits[0, :-1]
    lp = torch.log_softmax(logits.double(), -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    greedy = model.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False, min_new_tokens=NEW_TOKENS)
    return lp, greedy[0, len(ids):].tolist()


def test_llama_cpp_runs_pruned_exports_like_transformers(tmp_path):
    tools = _tools()
    path = resolve_gguf("smollm2")
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    tok.pad_token = tok.pad_token or tok.eos_token
    jobs, expected = [], {}
    for name, (family, spec) in CASES.items():
        d = tmp_path / name.replace(" ", "-")
        model = _pruned(family, spec, d, tok)
        res = export_gguf(d, tmp_path / f"{d.name}.gguf", "f32", log=None)
        assert tensor_types(tmp_path / f"{d.name}.gguf")[0] == res["arch"]
        ids = [tok(p)["input_ids"] for p in PROMPTS]
        expected[name] = [_hf(model, i) for i in ids]
        jobs.append({"op": "score", "model": res["path"], "prompts": ids, "new_tokens": NEW_TOKENS})
    worst = {}
    for name, res in zip(CASES, run_worker(jobs, tools)):
        assert "error" not in res, f"{name}: llama.cpp could not run it: {res['error']}"
        diffs = []
        for (lp, greedy), got in zip(expected[name], res["prompts"]):
            assert got["greedy"] == greedy, f"{name}: greedy tokens differ"
            diffs.append((lp - torch.tensor(got["logprobs"], dtype=torch.float64)).abs().max().item())
        worst[name] = max(diffs)
    print("max |log-prob difference| llama.cpp vs transformers:", {k: f"{v:.2e}" for k, v in worst.items()})
    assert all(v < TOLERANCE for v in worst.values()), worst


def test_k_quants_are_written_by_llama_cpp_and_fall_back_where_rows_do_not_fit(tmp_path):
    tools = _tools()
    path = resolve_gguf("smollm2")
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    _pruned("llama", StepSpec(mlp_neurons=16), tmp_path / "m", tok)  # widths 128 / 112: none fits 256
    res = export_gguf(tmp_path / "m", tmp_path / "m.gguf", "q4_k_m", log=None)
    assert "not a multiple of 256" in res["warning"]
    assert "Q4_K" not in res["types"] and "Q5_0" in res["types"]  # the fallback llama.cpp takes
    [score] = run_worker([{"op": "score", "model": res["path"], "prompts": [[1, 2, 3]], "new_tokens": 1}], tools)
    assert "error" not in score
