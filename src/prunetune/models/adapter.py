"""The adapter: the one description of a decoder family's module and config names that the rest uses.

Each family file fills a `FamilyAdapter` with plain data (attribute names, fused layouts, tiny test
config); nothing outside `models/` names a projection or reads a family-specific config field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from prunetune.models.moe import MoE


@dataclass(frozen=True)
class RowBlocks:
    """A Linear whose output rows are consecutive blocks, e.g. fused [gate; up] or [q; k; v], or a norm
    with one weight entry per such row (OLMo 2's q_norm / k_norm).

    `blocks` names each block in order: "mlp" (intermediate_size rows), "q" (heads * head_dim rows),
    "k" / "v" (kv_heads * head_dim rows).
    """

    linear: nn.Module
    blocks: tuple[str, ...]


@dataclass(frozen=True)
class FamilyAdapter:
    model_type: str
    """`config.model_type` this adapter serves."""
    mlp_in: tuple[tuple[str, tuple[str, ...]], ...] = (("gate_proj", ("mlp",)), ("up_proj", ("mlp",)))
    """MLP input projections (attribute of `layer.mlp`) and their row blocks; gate first."""
    mlp_out: str = "down_proj"
    attn_in: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("q_proj", ("q",)),
        ("k_proj", ("k",)),
        ("v_proj", ("v",)),
    )
    attn_out: str = "o_proj"
    attn_module_counts: tuple[str, ...] = ()
    """Attributes on the attention module caching head counts that surgery must keep in sync."""
    qkv_bias: str | bool = "attention_bias"
    """Whether q/k/v carry biases: a constant, or the name of the config flag that says so."""
    o_bias: str | bool = "attention_bias"
    mlp_bias: str | bool = False
    norms_per_layer: int = 2
    """hidden_size-sized RMSNorms in each decoder layer (for parameter counts from a config)."""
    qk_norm: str | None = None
    """RMSNorm on queries and keys: "head" = one head_dim-sized weight shared by every head (Qwen3,
    Gemma 3; KV-group pruning leaves it alone); "proj" = over the whole q / k projection width, one
    weight entry per output row (OLMo 2; KV-group pruning slices it with the rows, and the kept heads are
    then normalised over the kept width only, as if the removed heads had never existed)."""
    qk_norms: tuple[tuple[str, str], ...] = (("q_norm", "q"), ("k_norm", "k"))
    """Attributes of those norms on the attention module and the row block each normalises."""
    heads_divide_hidden: bool = False
    """The family's transformers config rejects a hidden_size that num_attention_heads does not divide
    (Llama, Gemma 2 / 3), even with an explicit head_dim: KV-group pruning must leave a divisor."""
    per_layer_config: tuple[str, ...] = ("layer_types",)
    """Config lists with one entry per decoder layer, sliced with the layers when layers are removed."""
    final_logit_softcap: str | None = None
    """Config field of the cap the family applies to its output logits (tanh(x / cap) * cap), if any."""
    logits_divisor: str | None = None
    """Config field the family divides its output logits by (Granite's logits_scaling), if any."""
    qk_norm_full: bool = False
    """RMSNorm over the whole q / k projection, not per head (OLMoE): KV groups cannot be removed exactly."""
    moe: MoE | None = None
    """The sparse-block layout of a mixture-of-experts family (None: dense)."""
    tiny_config: dict = field(default_factory=dict)
    """Extra config fields for the family's tiny random test model."""
    pre_norms: tuple[str, ...] = ("input_layernorm", "post_attention_layernorm")
    """hidden_size norms in each layer whose output feeds projections (Llama's post_attention_layernorm
    is the pre-MLP norm). With `post_norms` these are all `norms_per_layer` of them."""
    post_norms: tuple[str, ...] = ()
    """hidden_size norms whose output is added to the residual stream (Gemma 2's post-attention and
    post-feed-forward norms)."""
    final_norm: str = "norm"
    """Attribute of the decoder (`model.model`) holding the norm before lm_head."""
    norm_offset: float = 0.0
    """The norms compute x / rms(x) * (offset + weight): 0 for Llama's RMSNorm, 1 for Gemma's."""
    embed_scale: bool = False
    """Embeddings are multiplied by sqrt(hidden_size) (Gemma), a factor that follows the hidden size."""

    def output_logits(self, model, hidden):
        """The logits the causal-LM head makes of final hidden states (for callers that run the head on
        chunks of positions, e.g. chunked distillation); equal to `model(...).logits` at those positions."""
        logits = model.get_output_embeddings()(hidden)
        if self.logits_divisor:
            logits = logits / getattr(model.config, self.logits_divisor)
        cap = getattr(model.config, self.final_logit_softcap, None) if self.final_logit_softcap else None
        return torch.tanh(logits / cap) * cap if cap else logits

    def flag(self, config, value: str | bool) -> bool:
        return bool(getattr(config, value, False)) if isinstance(value, str) else bool(value)

    # ---- modules -------------------------------------------------------------------------
    def layers(self, model) -> nn.ModuleList:
        return model.model.layers

    def set_layers(self, model, layers: nn.ModuleList) -> None:
        model.model.layers = layers

    def mlp_in_blocks(self, layer) -> list[RowBlocks]:
        return [RowBlocks(getattr(layer.mlp, name), blocks) for name, blocks in self.mlp_in]

    def mlp_out_linear(self, layer) -> nn.Linear:
        """Its input is act(gate) * up: one column per intermediate neuron."""
        return getattr(layer.mlp, self.mlp_out)

    def attn(self, layer) -> nn.Module:
        return layer.self_attn

    def attn_in_blocks(self, layer) -> list[RowBlocks]:
        return [RowBlocks(getattr(layer.self_attn, name), blocks) for name, blocks in self.attn_in]

    def attn_row_norms(self, layer) -> list[RowBlocks]:
        """Norms whose weight has one entry per q / k projection row ("proj" q/k norms); else none."""
        if self.qk_norm != "proj":
            return []
        return [RowBlocks(getattr(self.attn(layer), name), (block,)) for name, block in self.qk_norms]

    def attn_out_linear(self, layer) -> nn.Linear:
        """Its input is the concatenated per-head attention outputs: head_dim columns per query head."""
        return getattr(layer.self_attn, self.attn_out)

    def set_attn_counts(self, layer, num_heads: int, num_kv_heads: int) -> None:
        attn = self.attn(layer)
        for name in self.attn_module_counts:
            setattr(attn, name, num_kv_heads if "key_value" in name else num_heads)

    def layer_norms(self, layer) -> tuple[list[nn.Module], list[nn.Module]]:
        """(pre-norms, post-norms) of a decoder layer: every hidden_size norm it holds."""
        return [getattr(layer, n) for n in self.pre_norms], [getattr(layer, n) for n in self.post_norms]

    def final_norm_module(self, model) -> nn.Module:
        return getattr(model.model, self.final_norm)

    def set_embed_scale(self, model, hidden_size: int) -> None:
        """Keep the embedding's sqrt(hidden_size) factor in step with a new hidden size (Gemma)."""
        if not self.embed_scale:
            return
        emb = model.get_input_embeddings()
        emb.scalar_embed_scale = hidden_size**0.5
        emb.embed_scale.fill_(hidden_size**0.5)

    def set_layer_index(self, layer, idx: int) -> None:
        self.attn(layer).layer_idx = idx
        if hasattr(layer, "layer_idx"):
            layer.layer_idx = idx
