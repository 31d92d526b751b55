"""Sharded recovery: FSDP2 under `torchrun --nproc_per_node=2` (gloo on CPU) trains to DDP's weights, carries
AdamW moments across a cut, and only rank 0 writes; impossible shardings fail before any weights load."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prunetune.errors import UserError
from prunetune.recovery import resolve_config, sharding
from tests.recovery.helpers import MEMO, TEMPLATE

ROOT = Path(__file__).resolve().parents[2]


def _torchrun(*args, timeout=240):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *map(str, args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_fsdp_matches_ddp_carries_moments_across_a_cut_and_rank0_writes(tmp_path):
    from transformers import AutoModelForCausalLM

    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"text": TEMPLATE.format(**r)}) + "\n" for r in MEMO))
    proc = _torchrun(Path(__file__).with_name("fsdp_worker.py"), tmp_path, data)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for runs in ranks:
        ddp, fsdp = runs["none"], runs["fsdp"]
        assert ddp["skipped"] == fsdp["skipped"] == 0  # every carried moment fitted its sliced parameter
        assert ddp["weights"].keys() == fsdp["weights"].keys()
        assert ddp["weights"]["model.layers.0.mlp.up_proj.weight"].shape == (72, 64)  # the cut happened
        for k, w in ddp["weights"].items():
            torch.testing.assert_close(fsdp["weights"][k], w, rtol=1e-5, atol=1e-6, msg=k)
        for k, m in ddp["moments"].items():
            for part in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(fsdp["moments"][k][part], m[part], rtol=1e-4, atol=1e-9, msg=k)
            assert float(fsdp["moments"][k]["step"]) == float(m["step"]) == 4  # 2 steps, carried, + 2
        for part, n in ddp["rank_bytes"].items():  # while training, each rank held about half
            assert 0.45 * n <= fsdp["rank_bytes"][part] <= 0.55 * n, part
    for k, w in ranks[0]["fsdp"]["weights"].items():  # every rank holds the same full model to prune next
        assert torch.equal(ranks[1]["fsdp"]["weights"][k], w), k
    cli = [r["cli"] for r in ranks]
    assert cli[0]["steps"] == cli[1]["steps"] == 2 and cli[0]["world_size"] == 2
    assert all(torch.equal(cli[1]["weights"][k], w) for k, w in cli[0]["weights"].items())
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(("rank", "work"))) == [
        "data.jsonl", "out"]  # one checkpoint (a second writer would have failed on the existing --out)
    assert "distributed_config" not in json.loads((tmp_path / "out" / "config.json").read_text())
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "out").state_dict()
    assert all(torch.equal(saved[k], w) for k, w in cli[0]["weights"].items())


def _cfg(**kw):
    return resolve_config("cpt", kw)


@pytest.mark.parametrize(
    ("overrides", "env", "message"),
    [
        ({"sharding": "fsdp"}, {"WORLD_SIZE": "1"}, "sharding: fsdp needs several processes"),
        ({"sharding": "hybrid_fsdp"}, {"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "4"}, "hybrid_fsdp .* 1 node"),
        ({"sharding": "fsdp", "cpu_offload": True}, {"WORLD_SIZE": "2"}, "cpu_offload needs a GPU"),
    ],
)
def test_impossible_launch_is_one_line_before_weights(monkeypatch, overrides, env, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    if "cpu_offload" in overrides:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match=message) as e:
        sharding.check(_cfg(**overrides))
    assert "\n" not in str(e.value)


def test_zero_without_deepspeed_names_the_install(monkeypatch):
    monkeypatch.setattr(sharding.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"^sharding: zero2 needs deepspeed \(pip install deepspeed\)$"):
        sharding.check(_cfg(sharding="zero2"))


def test_zero_cannot_carry_moments_even_when_only_validating():
    with pytest.raises(UserError, match="carry_optimizer cannot carry AdamW moments .* zero3"):
        sharding.check(_cfg(sharding="zero3"), carry_optimizer=True, for_run=False)
    sharding.check(_cfg(sharding="fsdp"), carry_optimizer=True, for_run=False)  # FSDP2 carries them


def test_lora_with_fsdp_is_refused_by_the_config():
    with pytest.raises(UserError, match="lora is not supported with sharding: fsdp"):
        _cfg(sharding="fsdp", lora={"r": 4})


@pytest.mark.parametrize("offload", [False, True])
def test_generated_zero_config(tmp_path, offload):
    for stage in (2, 3):
        cfg = _cfg(sharding=f"zero{stage}", cpu_offload=offload)
        kwargs = sharding.training_kwargs(cfg, tmp_path)
        written = json.loads(Path(kwargs["deepspeed"]).read_text())
        assert written == sharding.zero_config(cfg)
        zero = written["zero_optimization"]
        assert zero["stage"] == stage
        assert ("offload_optimizer" in zero) == offload and ("offload_param" in zero) == (offload and stage == 3)
        assert "optimizer" not in written and "scheduler" not in written  # DeepSpeed wraps ours
        assert written["train_micro_batch_size_per_gpu"] == "auto"  # filled from TrainingArguments
    given = tmp_path / "ds.json"
    given.write_text("{}")
    assert sharding.training_kwargs(_cfg(sharding="zero2", deepspeed_config=str(given)), tmp_path) == {
        "deepspeed": str(given)
    }
    assert sharding.training_kwargs(_cfg(sharding="fsdp"), tmp_path) == {}


def test_tied_embeddings_are_refused_by_fsdp_not_silently_untied():
    from prunetune.builtin.tiny import tiny_model

    model = tiny_model("llama", tie_word_embeddings=True)[0]
    with pytest.raises(UserError, match="tied input/output embeddings"):
        sharding.shard(model, _cfg(sharding="fsdp"))
