"""What serving engines need of a checkpoint beyond what transformers needs: rewrites and width rules.

vLLM's Qwen2 attention derives head_dim as hidden_size / num_attention_heads and ignores the config's
explicit `head_dim`, so a Qwen2 whose KV groups were pruned (fewer heads of the same head_dim) fails to
load there. The same model is exactly a Llama with biases on q/k/v and a zero bias on o_proj (same
RMSNorm, rotary embedding, SiLU MLP and attention), and vLLM's Llama honours head_dim: such a Qwen2 is
written as LlamaForCausalLM (logits identical; tested), unless it uses sliding windows, which Llama
cannot express, or its heads do not divide hidden_size, which Llama's config rejects (then it is written
as is, with a warning). Every other family is written as it is: vLLM reads head_dim for Llama, Mistral,
Qwen3, Gemma 2 / 3, Phi-3 and Granite, and runs OLMo 2 and SmolLM3 through its Transformers backend.

Width rules: tensor-parallel engines split attention heads and the MLP width across ranks, and 4-bit
kernels (Marlin / GPTQ / AWQ in vLLM) need each rank's slice of the MLP width to be a multiple of 128
("input_size_per_partition = ... is not divisible by 128" is what users of other pruners hit).
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger("prunetune.models")

QUANT_GROUP = 128
"""The group size of 4-bit kernels: each tensor-parallel rank's MLP slice must be a multiple of it."""


def serving_rewrite(model) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """(config.json fields to change, tensors to add) so that serving engines load `model`, or None."""
    c = model.config
    if c.model_type == "qwen2_moe" and getattr(c, "head_dim", None) not in (None, c.hidden_size // c.num_attention_heads):
        log.warning("this Qwen2-MoE has pruned heads: vLLM's Qwen2-MoE derives head_dim as hidden_size / heads "
                    "and cannot load it (transformers can)")
    if c.model_type != "qwen2":
        return None
    head_dim = getattr(c, "head_dim", None)
    if head_dim is None or head_dim == c.hidden_size // c.num_attention_heads:
        return None
    if getattr(c, "use_sliding_window", False):
        log.warning(
            "this Qwen2 has pruned heads and uses sliding windows: vLLM's Qwen2 cannot load it (it ignores "
            "head_dim) and a Llama cannot express the windows; it is written as Qwen2"
        )
        return None
    if c.hidden_size % c.num_attention_heads:
        log.warning(
            f"this Qwen2 has pruned heads and {c.num_attention_heads} heads do not divide hidden_size={c.hidden_size}: "
            "vLLM's Qwen2 cannot load it (it ignores head_dim) and transformers' Llama config rejects it; it is "
            "written as Qwen2"
        )
        return None
    layers = model.model.layers
    extra = {
        f"model.layers.{i}.self_attn.o_proj.bias": torch.zeros(
            c.hidden_size, dtype=layer.self_attn.o_proj.weight.dtype
        )
        for i, layer in enumerate(layers)
    }
    fields = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": True,
        "mlp_bias": False,
        "head_dim": head_dim,
    }
    return fields, extra


def width_issues(intermediate_size: int, num_attention_heads: int, num_key_value_heads: int,
                 tensor_parallel: int = 1) -> list[str]:
    """Why a shape would not shard over `tensor_parallel` ranks or run 4-bit kernels (empty: it would)."""
    tp, out = tensor_parallel, []
    if num_attention_heads % tp or num_key_value_heads % tp:
        out.append(f"heads {num_attention_heads}/{num_key_value_heads} do not split over {tp} ranks")
    if intermediate_size % tp:
        out.append(f"MLP width {intermediate_size} does not split over {tp} ranks")
    elif (intermediate_size // tp) % QUANT_GROUP:
        out.append(
            f"MLP width {intermediate_size} / {tp} rank(s) = {intermediate_size // tp} is not a multiple of "
            f"{QUANT_GROUP} (4-bit kernels)"
        )
    return out


KQUANT_BLOCK = 256
"""llama.cpp's K-quants (Q4_K_M, Q5_K_M, Q6_K, ...) pack each row in blocks of this many weights."""


def gguf_row_issues(shape, block: int = KQUANT_BLOCK) -> list[str]:
    """The row lengths of `shape` (a ModelShape) that are not a multiple of `block`: llama.cpp quantizes
    each weight along its rows (hidden_size for q/k/v/gate/up and the embeddings, heads x head_dim for
    o_proj, the MLP / expert widths for down_proj), and a tensor whose rows do not fit is written in a
    fallback type instead (for K-quants Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0; F16 below 32)."""
    lengths = {"hidden_size": shape.hidden_size,
               "heads x head_dim": shape.num_attention_heads * shape.head_dim}
    if shape.intermediate_size and len(shape.moe_layers) < shape.num_hidden_layers:
        lengths["intermediate_size"] = shape.intermediate_size
    if shape.moe_layers:
        lengths["moe_intermediate_size"] = shape.moe_intermediate_size
        if shape.shared_expert_intermediate_size:
            lengths["shared_expert_intermediate_size"] = shape.shared_expert_intermediate_size
    return [f"{name} {n}" for name, n in lengths.items() if n % block]
