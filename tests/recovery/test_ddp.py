"""cpt under `torchrun --nproc_per_node=2` (gloo on CPU): DDP keeps the ranks identical; only rank 0 writes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.recovery.helpers import MEMO, TEMPLATE

pytestmark = pytest.mark.slow


def test_torchrun_two_ranks_end_identical_and_rank0_writes(tmp_path):
    import json

    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"text": TEMPLATE.format(**r)}) + "\n" for r in MEMO))
    digests = tmp_path / "digests"
    digests.mkdir()
    out = tmp_path / "out"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(Path(__file__).with_name("ddp_worker.py")),
        str(digests),
        "recover",
        "tiny-random-llama",
        "--out",
        str(out),
        "--method",
        "cpt",
        "--data",
        str(data),
        "--quiet",
        "max_steps=3",
        "max_length=16",
        "per_device_train_batch_size=2",
        "learning_rate=1e-3",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = sorted(p.read_text().split() for p in digests.iterdir())
    assert len(ranks) == 2
    (h0, steps0, world0), (h1, steps1, world1) = ranks
    assert h0 == h1 and steps0 == steps1 == "3" and world0 == world1 == "2"
    # Exactly one checkpoint, written once (a second writer would have failed on the existing --out).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.jsonl", "digests", "out"]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[-1])["tokens"] == 3 * 2 * 2 * 16  # both ranks' tokens counted
    from prunetune.builtin.tiny import tiny_model

    trained, start = AutoModelForCausalLM.from_pretrained(out), tiny_model("llama")[0]
    assert not torch.equal(trained.model.embed_tokens.weight, start.model.embed_tokens.weight)
