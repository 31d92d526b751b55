"""The cost model against hand computation on a tiny shape, and against the H200 run it is calibrated on."""

import json
from pathlib import Path

import pytest

from prunetune.errors import UserError
from prunetune.loop.cost import (
    GPUS,
    MEASURED_SHAPE,
    TRAIN_MFU,
    Training,
    gpu_spec,
    memory_per_gpu,
    shard_divisors,
)
from prunetune.models.shape import ModelShape

ROOT = Path(__file__).resolve().parents[2]
# layer: attention 8*8 + 2*8*4 + 8*8 = 192, MLP 3*8*16 = 384, norms 16 -> 592; 2 layers + final norm = 1192;
# embeddings 100*8, untied x2 = 1600 -> 2792 parameters. The largest FSDP unit is the embedding (800).
TINY = ModelShape(model_type="llama", vocab_size=100, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, head_dim=4, tie_word_embeddings=False)


def test_tiny_shape_counts_as_computed_by_hand():
    assert (TINY.layer_params(), TINY.params()) == (592, 2792)


def test_unsharded_bf16_holds_weights_grads_and_two_moments_in_bf16():
    m = memory_per_gpu(TINY, Training(weight_bytes=2, micro_batch=2, seq_len=3))
    assert (m.params, m.grads, m.optimizer) == (2792 * 2, 2792 * 2, 2792 * 4)
    # per token per layer 4*8 + 2*8 + 2*4 + 4*16 = 120 elements; 6 tokens, 2 bytes, 2 layers; logits 6*100*16
    assert m.activations == 2 * 120 * 6 * 2 + 6 * 100 * 16
    gc = memory_per_gpu(TINY, Training(weight_bytes=2, micro_batch=2, seq_len=3, gradient_checkpointing=True))
    assert gc.activations == 2 * 8 * 6 * 2 + 120 * 6 * 2 + 6 * 100 * 16  # layer inputs + one layer rebuilt


def test_sharding_divides_by_ranks():
    zero2 = memory_per_gpu(TINY, Training(ranks=4, sharding="zero2", weight_bytes=2))
    assert (zero2.params, zero2.grads, zero2.optimizer) == (2792 * 2, 2792 * 2 / 4, 2792 * 12 / 4)  # fp32 master + moments
    fsdp = memory_per_gpu(TINY, Training(ranks=4, sharding="fsdp", weight_bytes=2))
    unit = 800 * 2  # the gathered embedding, prefetched once more, and its gradient
    assert (fsdp.params, fsdp.grads, fsdp.optimizer) == (2792 * 2 / 4 + 2 * unit, 2792 * 2 / 4 + unit, 2792 * 4 / 4)
    assert shard_divisors("hybrid_fsdp", 32) == (8, 8, 8) and shard_divisors("none", 32) == (1, 1, 1)
    fp32 = memory_per_gpu(TINY, Training(ranks=2, sharding="zero3", weight_bytes=4))
    assert fp32.optimizer == 2792 * 8 / 2  # fp32 weights: two fp32 moments, no master copy


def test_cpu_offload_moves_state_to_cpu():
    on = memory_per_gpu(TINY, Training(ranks=4, sharding="fsdp", cpu_offload=True, frozen_copy=True))
    off = memory_per_gpu(TINY, Training(ranks=4, sharding="fsdp", frozen_copy=True))
    assert on.optimizer == 0 and on.frozen == 0 and on.params == 2 * 800 * 2 and on.grads == 800 * 2
    assert on.offloaded == 2792 * 4 / 4 + 3 * 2792 * 2 / 4  # moments, and the shards of params, grads, frozen copy
    assert on.total < off.total and off.offloaded == 0
    zero2 = memory_per_gpu(TINY, Training(ranks=4, sharding="zero2", cpu_offload=True))
    assert zero2.optimizer == 0 and zero2.offloaded == 2792 * 12 / 4 and zero2.params == 2792 * 2


def test_gpu_table_and_names():
    assert GPUS["h200"].memory == 141e9 and GPUS["h100"].peak_flops == GPUS["h200"].peak_flops == 989e12
    assert GPUS["a100"].peak_flops == 312e12
    with pytest.raises(UserError, match=r"--gpu: unknown GPU 'h2000' \(did you mean 'h200'\?\)"):
        gpu_spec("h2000")


def test_calibration_matches_the_h200_measurement():
    from transformers import AutoConfig

    data = json.loads((ROOT / "src/prunetune/recipes/configs/llama-3-8b.json").read_text())
    assert ModelShape.from_config(AutoConfig.for_model(data.pop("model_type"), **data)) == MEASURED_SHAPE
    bench = json.loads((ROOT / "bench/results/speed_h200.json").read_text())["shapes"]["llama-3-8b"]["models"]["1.0"]
    assert abs(TRAIN_MFU - bench["ours_mfu"]) < 0.005  # same run; this module also counts attention FLOPs
    # the measured run: bf16 weights and AdamW, no sharding, 4 x 512 tokens, no checkpointing
    m = memory_per_gpu(MEASURED_SHAPE, Training(weight_bytes=2, micro_batch=4, seq_len=512))
    assert m.total / 2**30 == pytest.approx(bench["peak_memory_gib"], rel=0.05)
