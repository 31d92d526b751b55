"""`prunetune recover` end to end on a tiny model, and every bad input: one line, exit 2, nothing written."""

import json
import re

import pytest
import torch
from transformers import AutoModelForCausalLM

from prunetune.builtin.tiny import tiny_config, tiny_model
from tests.conftest import run_cli
from tests.recovery.helpers import MEMO, TEMPLATE


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("recover-cli")
    (d / "data.jsonl").write_text("".join(json.dumps({"text": TEMPLATE.format(**r)}) + "\n" for r in MEMO))
    (d / "empty.jsonl").write_text("")
    model, tok = tiny_model("llama")
    model.save_pretrained(d / "model")
    tok.save_pretrained(d / "model")
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight[0, 0] = float("nan")
    model.save_pretrained(d / "nan-model")
    tok.save_pretrained(d / "nan-model")
    AutoModelForCausalLM.from_config(tiny_config("llama", vocab_size=len(tok) + 8)).save_pretrained(
        d / "big-vocab"
    )
    return d


def _tree(path):
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_recover_writes_a_stock_checkpoint_and_metrics(files, tmp_path, capsys):
    out = tmp_path / "out"
    rc = run_cli(
        "recover",
        files / "model",
        "--out",
        out,
        "--method",
        "cpt",
        "--data",
        files / "data.jsonl",
        "--quiet",
        "max_steps=3",
        "max_length=16",
        "learning_rate=1e-3",
        "--chunk",
        "1",
        "--chunk-size",
        "4",
    )
    assert rc == 0, capsys.readouterr().err
    assert {"config.json", "model.safetensors", "metrics.jsonl", "recovery.json"} <= {
        p.name for p in out.iterdir()
    }
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3] and all(
        {"loss", "tokens", "wall_time"} <= set(m) for m in lines
    )
    summary = json.loads((out / "recovery.json").read_text())
    assert summary["config"]["max_steps"] == 3 and summary["chunk"] == 1 and summary["steps"] == 3
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    src = AutoModelForCausalLM.from_pretrained(files / "model")
    assert set(reloaded.state_dict()) == set(src.state_dict())
    assert not torch.equal(reloaded.model.embed_tokens.weight, src.model.embed_tokens.weight)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


BAD = {
    "missing data": (
        ["--method", "cpt", "--data", "{d}/nope.jsonl"],
        "--data: '.*nope.jsonl' does not exist",
    ),
    "empty data": (["--method", "cpt", "--data", "{d}/empty.jsonl"], "is empty"),
    "missing field": (
        ["--method", "cpt", "--data", "{d}/data.jsonl", "text_field=body", "max_length=16"],
        "no field 'body'",
    ),
    "sft field": (["--method", "sft", "--data", "{d}/data.jsonl"], "neither 'prompt'"),
    "teacher vocab": (
        ["--method", "distill", "--data", "{d}/data.jsonl", "--teacher", "{d}/big-vocab"],
        "teacher vocabulary size 328 differs",
    ),
    "no teacher": (["--method", "distill", "--data", "{d}/data.jsonl"], "needs --teacher"),
    "unknown key": (
        ["--method", "cpt", "--data", "{d}/data.jsonl", "max_step=3"],
        "did you mean 'max_steps'",
    ),
    "unknown method": (["--method", "cptt", "--data", "{d}/data.jsonl"], "did you mean 'cpt'"),
    "grpo without task": (["--method", "grpo", "--data", "{d}/data.jsonl"], "needs --task"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_exit_2_nothing_written(files, tmp_path, capsys, case):
    argv, pattern = BAD[case]
    out = tmp_path / "out"
    rc = run_cli(
        "recover",
        files / "model",
        "--out",
        out,
        "--quiet",
        "max_steps=2",
        *[a.format(d=files) for a in argv],
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("prunetune: error:") and "\n" not in err
    assert re.search(pattern, err), err
    assert list(tmp_path.iterdir()) == []


def test_nan_loss_fails_cleanly_and_keeps_the_input(files, tmp_path, capsys):
    before = _tree(files / "nan-model")
    rc = run_cli(
        "recover",
        files / "nan-model",
        "--out",
        tmp_path / "out",
        "--method",
        "cpt",
        "--data",
        files / "data.jsonl",
        "--quiet",
        "max_steps=3",
        "max_length=16",
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "loss is nan" in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []
    assert _tree(files / "nan-model") == before


def test_existing_out_is_refused(files, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    rc = run_cli(
        "recover",
        files / "model",
        "--out",
        tmp_path / "out",
        "--method",
        "cpt",
        "--data",
        files / "data.jsonl",
        "--quiet",
    )
    assert rc == 2 and "already exists" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]
