"""The cost planner: GPU-hours and memory per GPU of a recipe's iterations, from the planned shapes alone.

Time is FLOPs over (peak x an MFU measured in this project) for training, and bytes read over memory
bandwidth for generation (decoding reads the weights once per step, so it is bandwidth-bound), both
calibrated on one measured H200 run (bench/results/speed_h200*.md). Memory is bytes per GPU of
parameters, gradients, optimizer state, activations, a frozen copy (distill's teacher, grpo's reference)
and the rollout engine, under the recipe's sharding. Not modelled: communication (sharded steps are
assumed to keep the measured MFU), the CPU optimizer step of cpu_offload, scoring passes (a few
calibration forwards), gate rollbacks, checkpoint writes, CUDA context and allocator fragmentation.
"""

from __future__ import annotations

from dataclasses import dataclass

from prunetune.errors import UserError, did_you_mean
from prunetune.models.shape import ModelShape


@dataclass(frozen=True)
class GPU:
    name: str
    peak_flops: float
    """Dense bf16 tensor-core FLOP/s (the datasheets' "with sparsity" figure halved)."""
    memory: float
    """Bytes of device memory (datasheet GB, 1e9)."""
    bandwidth: float
    """Device memory bytes/s."""


# NVIDIA datasheets: A100 80GB SXM (BF16 312 TFLOPS dense, 80 GB HBM2e, 2,039 GB/s);
# H100 SXM (BF16 1,979 TFLOPS with sparsity = 989 dense, 80 GB HBM3, 3.35 TB/s);
# H200 SXM (BF16 1,979 TFLOPS with sparsity = 989 dense, 141 GB HBM3e, 4.8 TB/s).
GPUS = {
    "a100": GPU("A100 80GB SXM", 312e12, 80e9, 2.039e12),
    "h100": GPU("H100 SXM", 989e12, 80e9, 3.35e12),
    "h200": GPU("H200 SXM", 989e12, 141e9, 4.8e12),
}
GPUS_PER_NODE = 8
"""hybrid_fsdp shards within a node of this many GPUs (an HGX board)."""

# The measurements everything is calibrated on: a random Llama-3-8B shape in bf16 on one H200
# (bench/results/speed_h200.md, speed_h200_static.md).
MEASURED_SHAPE = ModelShape(
    model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=8, head_dim=128, tie_word_embeddings=False, heads_divide_hidden=True,
)
MEASURED_TRAIN_TOKENS_PER_S = 6750.7
"""prunetune cpt, 4 x 512-token blocks, bf16, no gradient checkpointing (MFU 30.7% counting 6N FLOPs)."""
MEASURED_TRAIN_CONTEXT = 512
MEASURED_DECODE_TOKENS_PER_S = 1684.2
"""transformers generate(), static compiled KV cache, greedy, batch 16, short prompts."""
MEASURED_DECODE_BATCH = 16
LOGIT_BYTES = 16
"""Bytes per (token, vocab entry) at the loss: bf16 logits, their fp32 copy, the saved log-softmax, its fp32
gradient and the bf16 one (with the rest of this model the measured run's 74.9 GiB peak comes out at 74.0)."""
GRPO_LOGIT_BYTES = 8
"""TRL's GRPO keeps only the completion's logits (logits_to_keep) and takes log-probs row by row: bf16 logits,
their temperature-scaled copy and the gradients of both (read from TRL's code, not measured)."""
PROMPT_TOKENS = 256
"""Assumed prompt length of a GRPO rollout or an evaluation question (with its chat template)."""


def train_flops_per_token(shape: ModelShape, seq_len: int, *, recompute: bool = False) -> float:
    """Forward + backward (3 forwards; 4 when activations are recomputed), attention at the mean causal context."""
    return (4 if recompute else 3) * shape.flops_per_token(context=seq_len // 2)


TRAIN_MFU = MEASURED_TRAIN_TOKENS_PER_S * train_flops_per_token(MEASURED_SHAPE, MEASURED_TRAIN_CONTEXT) / GPUS["h200"].peak_flops
"""The measured MFU under this module's FLOP count (attention included): 31.0%."""


def _matmul_bytes(shape: ModelShape, weight_bytes: int) -> float:
    """Weight bytes a decode step reads: every matrix of the layers and the lm_head (not the embedding table)."""
    return (shape.non_embedding_params() + shape.vocab_size * shape.hidden_size) * weight_bytes


def kv_bytes_per_token(shape: ModelShape, weight_bytes: int) -> int:
    return 2 * shape.num_hidden_layers * shape.num_key_value_heads * shape.head_dim * weight_bytes


DECODE_EFFICIENCY = (
    MEASURED_DECODE_TOKENS_PER_S / MEASURED_DECODE_BATCH * _matmul_bytes(MEASURED_SHAPE, 2) / GPUS["h200"].bandwidth
)
"""Share of peak bandwidth the measured decode reached (weights read once per batch-16 step): 0.33."""


def decode_seconds_per_token(shape: ModelShape, gpu: GPU, context: float, weight_bytes: int, speedup: float) -> float:
    """One generated token's share of a batch-16 decode step: the weights over the batch plus its own KV cache."""
    step_bytes = _matmul_bytes(shape, weight_bytes) / MEASURED_DECODE_BATCH + context * kv_bytes_per_token(shape, weight_bytes)
    return step_bytes / (DECODE_EFFICIENCY * gpu.bandwidth * speedup)


def gpu_spec(name: str, key: str = "--gpu") -> GPU:
    if name not in GPUS:
        raise UserError(f"{key}: unknown GPU '{name}'{did_you_mean(name, GPUS)}; one of {', '.join(GPUS)}")
    return GPUS[name]


# ---------------------------------------------------------------------------------------------
@dataclass
class Memory:
    """Bytes per GPU; `offloaded` is what cpu_offload keeps in CPU memory instead (per GPU)."""

    params: float = 0.0
    grads: float = 0.0
    optimizer: float = 0.0
    activations: float = 0.0
    frozen: float = 0.0
    rollout: float = 0.0
    offloaded: float = 0.0

    @property
    def total(self) -> float:
        return self.params + self.grads + self.optimizer + self.activations + self.frozen + self.rollout


@dataclass
class Training:
    """What one rank holds and computes while a recovery runs: read off the recipe by `setup_of`."""

    ranks: int = 1
    sharding: str = "none"
    cpu_offload: bool = False
    gradient_checkpointing: bool = False
    weight_bytes: int = 2
    """Bytes per parameter as loaded (recipe dtype)."""
    act_bytes: int = 2
    """Bytes per activation (2 under bf16 autocast or bf16 weights)."""
    micro_batch: int = 1
    """Sequences per device per micro-batch."""
    seq_len: int = 512
    lora_rank: int | None = None
    frozen_copy: bool = False
    """A second, frozen model on every rank (distill's teacher, grpo's reference with beta > 0)."""
    frozen_bytes: int = 2
    frozen_logits: bool = False
    """The frozen copy's logits are held too (distill's KL)."""
    logit_tokens: int | None = None
    """Tokens per sequence whose logits are formed (default all; grpo: the completion's)."""
    logit_bytes: int = LOGIT_BYTES
    rollout_bytes: float = 0.0
    """GPU memory vLLM colocated with training takes (its gpu_memory_utilization share)."""
    rollout_kv_tokens: int = 0
    """Tokens of KV cache HF generate holds for the local rollout batch (grpo without vLLM)."""


def shard_divisors(sharding: str, ranks: int) -> tuple[int, int, int]:
    """How many ranks split (parameters, gradients, optimizer state)."""
    node = min(ranks, GPUS_PER_NODE)
    return {
        "none": (1, 1, 1),
        "zero2": (1, ranks, ranks),
        "zero3": (ranks, ranks, ranks),
        "fsdp": (ranks, ranks, ranks),
        "hybrid_fsdp": (node, node, node),
    }[sharding]


def optimizer_bytes_per_param(t: Training) -> int:
    """AdamW's two moments in the parameters' dtype (torch's AdamW, the trainer's own optimizer: measured),
    except DeepSpeed under bf16, which keeps an fp32 master copy and fp32 moments (12 bytes)."""
    if t.sharding in ("zero2", "zero3") and t.weight_bytes == 2:
        return 12
    return 2 * t.weight_bytes


def lora_params(shape: ModelShape, rank: int) -> int:
    """Adapter parameters on every linear of every layer (all-linear; a shorter target list is fewer)."""
    h, q, kv, i = shape.hidden_size, shape.num_attention_heads * shape.head_dim, shape.num_key_value_heads * shape.head_dim, shape.intermediate_size
    in_plus_out = (h + q) * 2 + (h + kv) * 2 + (h + i) * 3
    return rank * in_plus_out * shape.num_hidden_layers


def activation_elements_per_token_per_layer(shape: ModelShape) -> int:
    """Tensors a decoder layer saves for backward, per token (flash/SDPA attention: no seq x seq scores):
    both norms' inputs and outputs, q, k, v, the attention output, gate, up, act(gate) and their product."""
    q, kv = shape.num_attention_heads * shape.head_dim, shape.num_key_value_heads * shape.head_dim
    return 4 * shape.hidden_size + 2 * q + 2 * kv + 4 * shape.intermediate_size


def memory_per_gpu(shape: ModelShape, t: Training, frozen_shape: ModelShape | None = None) -> Memory:
    """Bytes per GPU while `shape` trains under `t`."""
    p_div, g_div, o_div = shard_divisors(t.sharding, t.ranks)
    n = shape.params()
    trainable = lora_params(shape, t.lora_rank) if t.lora_rank else n
    m = Memory(
        params=n * t.weight_bytes / p_div,
        grads=trainable * t.weight_bytes / g_div,
        optimizer=trainable * optimizer_bytes_per_param(t) / o_div,
        rollout=t.rollout_bytes + t.rollout_kv_tokens * kv_bytes_per_token(shape, t.weight_bytes),
    )
    if t.lora_rank:  # the adapter itself (small) sits beside the frozen base
        m.params += trainable * t.weight_bytes / p_div
    if t.frozen_copy:
        m.frozen = (frozen_shape or shape).params() * t.frozen_bytes / p_div
    if t.cpu_offload:
        moved = m.optimizer + ((m.params + m.grads + m.frozen) if p_div > 1 else 0.0)
        m.offloaded = moved
        m.optimizer = 0.0
        if p_div > 1:
            m.params = m.grads = m.frozen = 0.0
    if p_div > 1:  # one unit gathered, the next prefetched, and the gathered unit's gradient before reduce-scatter
        unit = max(shape.layer_params(), shape.vocab_size * shape.hidden_size)
        m.params += 2 * unit * t.weight_bytes
        m.grads += unit * t.weight_bytes
    tokens = t.micro_batch * t.seq_len
    per_layer = activation_elements_per_token_per_layer(shape) * tokens * t.act_bytes
    if t.gradient_checkpointing:  # every layer's input kept, one layer's activations rebuilt at a time
        acts = shape.num_hidden_layers * shape.hidden_size * tokens * t.act_bytes + per_layer
    else:
        acts = shape.num_hidden_layers * per_layer
    logit_tokens = t.micro_batch * (t.logit_tokens or t.seq_len)
    logits = logit_tokens * shape.vocab_size * (t.logit_bytes + (6 if t.frozen_logits else 0))
    m.activations = acts + logits
    return m


# ---------------------------------------------------------------------------------------------
@dataclass
class Assumptions:
    """What the recipe cannot say: defaults are the measured rates and upper bounds."""

    mfu: float = TRAIN_MFU
    gen_speedup: float = 1.0
    """Generation throughput relative to the measured HF static-cache decode at batch 16 (vLLM's larger
    batches are faster; not measured in this project)."""
    gen_fill: float = 1.0
    """Share of the generation budget a completion uses on average (1.0: every one runs to the limit)."""
    tokens_per_record: int | None = None
    """Tokens per training record when recovery is one pass over its chunk (default: config.max_length)."""
    eval_examples: int = 500
    """Examples per evaluation task when evaluation.limit is null (the files are not read)."""
