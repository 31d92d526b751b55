"""`prunetune prune --experts/--expert-neurons` on a MoE model writes a stock checkpoint `inspect` reads."""

import json

import torch
from transformers import AutoModelForCausalLM

from tests.conftest import run_cli


def test_prune_experts_then_inspect(tmp_path, capsys):
    out = tmp_path / "pruned"
    assert run_cli("prune", "tiny-random-mixtral", "--out", out, "--experts", "2", "--expert-neurons", "8",
                   "--expert-importance", "frequency", "--calibration-samples", "4", "--max-length", "32") == 0
    printed = capsys.readouterr().out
    assert "experts 8 -> 6; expert width 32 -> 24" in printed
    config = json.loads((out / "config.json").read_text())
    assert (config["num_local_experts"], config["intermediate_size"]) == (6, 24)
    history = json.loads((out / "prunetune_history.json").read_text())
    assert history[-1]["meta"]["expert_importance"] == "frequency" and len(history[-1]["experts"]["0"]) == 2
    model = AutoModelForCausalLM.from_pretrained(out)
    assert torch.isfinite(model(torch.tensor([[5, 6, 7]])).logits).all()
    assert run_cli("inspect", out) == 0
    shown = capsys.readouterr().out
    rows = {line[:35].strip(): line[35:].strip() for line in shown.splitlines()}
    assert rows["experts (per MoE layer)"] == "6" and rows["expert width"] == "24"
    assert "active parameters (top-k experts)" in rows
