"""A model's prunable shape read from its config, with parameter and FLOP counts that need no weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from prunetune.models import get_adapter


@dataclass(frozen=True)
class ModelShape:
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    """Dense MLP width (0 in a MoE family whose every layer is sparse)."""
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    tie_word_embeddings: bool
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    norms_per_layer: int = 2
    qk_norm: str | None = None
    """None, "head" (one head_dim weight each for q and k) or "proj" (one weight per q / k row)."""
    heads_divide_hidden: bool = False
    qk_norm_full: bool = False
    # mixture of experts (all 0 / empty for dense families); see prunetune.models.moe
    num_experts: int = 0
    experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    """Each routed expert's MLP width."""
    shared_expert_intermediate_size: int = 0
    shared_expert_gate: bool = False
    moe_layers: tuple[int, ...] = ()
    """Layers holding a sparse block; the others hold a dense MLP of `intermediate_size`."""

    @classmethod
    def from_config(cls, config) -> ModelShape:
        a = get_adapter(config)
        heads = config.num_attention_heads
        kv = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        fields = {"intermediate_size": config.intermediate_size, **(_moe_fields(a.moe, config) if a.moe else {})}
        return cls(
            model_type=config.model_type,
            vocab_size=config.vocab_size,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=heads,
            num_key_value_heads=kv,
            head_dim=head_dim,
            tie_word_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
            qkv_bias=a.flag(config, a.qkv_bias),
            o_bias=a.flag(config, a.o_bias),
            mlp_bias=a.flag(config, a.mlp_bias),
            norms_per_layer=a.norms_per_layer,
            qk_norm=a.qk_norm,
            heads_divide_hidden=a.heads_divide_hidden,
            qk_norm_full=a.qk_norm_full,
            **fields,
        )

    @property
    def group_size(self) -> int:
        """Query heads per KV head: a KV group is one KV head with its query heads."""
        return self.num_attention_heads // self.num_key_value_heads

    def attention_params_per_layer(self) -> int:
        h, d, q, kv = self.hidden_size, self.head_dim, self.num_attention_heads, self.num_key_value_heads
        n = h * q * d + 2 * h * kv * d + q * d * h
        if self.qkv_bias:
            n += q * d + 2 * kv * d
        if self.o_bias:
            n += h
        if self.qk_norm == "head":
            n += 2 * d
        elif self.qk_norm == "proj":
            n += (q + kv) * d
        return n

    def mlp_params_per_layer(self) -> int:
        h, i = self.hidden_size, self.intermediate_size
        return 3 * h * i + ((2 * i + h) if self.mlp_bias else 0)

    def layer_params(self) -> int:
        """A dense layer's parameters."""
        return self.attention_params_per_layer() + self.mlp_params_per_layer() + self.norms_per_layer * self.hidden_size

    @property
    def dense_layers(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.num_hidden_layers) if i not in set(self.moe_layers))

    def moe_params_per_layer(self, *, active: bool = False) -> int:
        """A sparse block's parameters: router, routed experts (only top-k of them if `active`), shared expert."""
        h, e = self.hidden_size, self.experts_per_tok if active else self.num_experts
        n = self.num_experts * h + e * 3 * h * self.moe_intermediate_size
        return n + 3 * h * self.shared_expert_intermediate_size + (h if self.shared_expert_gate else 0)

    def _sparse_layer_params(self, active: bool) -> int:
        return self.attention_params_per_layer() + self.moe_params_per_layer(active=active) + self.norms_per_layer * self.hidden_size

    def active_non_embedding_params(self) -> int:
        """Parameters one token passes through (top-k experts per sparse layer); == non-embedding if dense."""
        sparse = len(self.moe_layers) * self._sparse_layer_params(True)
        return len(self.dense_layers) * self.layer_params() + sparse + self.hidden_size

    def active_params(self) -> int:
        return self.active_non_embedding_params() + self.embedding_params()

    def embedding_params(self) -> int:
        """Input embeddings plus an untied lm_head (what structured pruning never touches)."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    def non_embedding_params(self) -> int:
        sparse = len(self.moe_layers) * self._sparse_layer_params(False)
        return len(self.dense_layers) * self.layer_params() + sparse + self.hidden_size  # + final norm

    def params(self) -> int:
        return self.non_embedding_params() + self.embedding_params()

    def flops_per_token(self, context: int = 128) -> int:
        """Forward FLOPs per token (2 per multiply-add) at a given context length, lm_head included."""
        h, d, q = self.hidden_size, self.head_dim, self.num_attention_heads
        mlp = len(self.dense_layers) * 3 * h * self.intermediate_size
        mlp += len(self.moe_layers) * self.moe_params_per_layer(active=True)  # top-k experts only
        matmul_params = self.num_hidden_layers * self.attention_params_per_layer() + mlp
        attn_scores = self.num_hidden_layers * 2 * q * d * context  # QK^T and AV
        return 2 * (matmul_params + attn_scores + self.vocab_size * h)

    def after(self, *, mlp_removed: int = 0, kv_groups_removed: int = 0, layers_removed: int | list[int] = 0,
              experts_removed: int = 0, expert_neurons_removed: int = 0, shared_removed: int = 0,
              hidden_removed: int = 0) -> ModelShape:
        """The shape after uniform removal: same counts from every layer.

        `layers_removed` as a count drops the last layers (exact unless dense and sparse layers mix); head_dim stays.
        """
        g = self.group_size
        gone = layers_removed if isinstance(layers_removed, list) else \
            list(range(self.num_hidden_layers - layers_removed, self.num_hidden_layers))
        layers_removed = len(gone)
        kept = [i for i in range(self.num_hidden_layers) if i not in set(gone)]
        return replace(
            self,
            intermediate_size=self.intermediate_size - mlp_removed,
            num_key_value_heads=self.num_key_value_heads - kv_groups_removed,
            num_attention_heads=self.num_attention_heads - kv_groups_removed * g,
            num_hidden_layers=self.num_hidden_layers - layers_removed,
            num_experts=self.num_experts - experts_removed,
            moe_intermediate_size=self.moe_intermediate_size - expert_neurons_removed,
            shared_expert_intermediate_size=self.shared_expert_intermediate_size - shared_removed,
            moe_layers=tuple(j for j, i in enumerate(kept) if i in set(self.moe_layers)),
            hidden_size=self.hidden_size - hidden_removed,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def _moe_fields(moe, config) -> dict:
    no_dense_mlp = moe.width == "intermediate_size"  # Mixtral, OLMoE: the field is the experts' width
    return dict(
        intermediate_size=0 if no_dense_mlp else config.intermediate_size,
        num_experts=getattr(config, moe.num_experts),
        experts_per_tok=getattr(config, moe.top_k),
        moe_intermediate_size=getattr(config, moe.width),
        shared_expert_intermediate_size=getattr(config, moe.shared_width) if moe.shared_width else 0,
        shared_expert_gate=bool(moe.shared_gate),
        moe_layers=moe.layer_ids(config),
    )
