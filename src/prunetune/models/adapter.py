"""The adapter: the one description of a decoder family's module and config names that the rest uses.

Each family file fills a `FamilyAdapter` with plain data (attribute names, fused layouts, tiny test
config); nothing outside `models/` names a projection or reads a family-specific config field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn


@dataclass(frozen=True)
class RowBlocks:
    """A Linear whose output rows are consecutive blocks, e.g. fused [gate; up] or [q; k; v].

    `blocks` names each block in order: "mlp" (intermediate_size rows), "q" (heads * head_dim rows),
    "k" / "v" (kv_heads * head_dim rows).
    """

    linear: nn.Linear
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
    qk_norm: bool = False
    """Per-head_dim RMSNorm on queries and keys (Qwen3)."""
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
