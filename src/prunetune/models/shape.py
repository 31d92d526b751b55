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
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    tie_word_embeddings: bool
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    norms_per_layer: int = 2
    qk_norm: bool = False

    @classmethod
    def from_config(cls, config) -> ModelShape:
        a = get_adapter(config)
        heads = config.num_attention_heads
        kv = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(
            model_type=config.model_type,
            vocab_size=config.vocab_size,
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
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
        if self.qk_norm:
            n += 2 * d
        return n

    def mlp_params_per_layer(self) -> int:
        h, i = self.hidden_size, self.intermediate_size
        return 3 * h * i + ((2 * i + h) if self.mlp_bias else 0)

    def layer_params(self) -> int:
        return self.attention_params_per_layer() + self.mlp_params_per_layer() + self.norms_per_layer * self.hidden_size

    def embedding_params(self) -> int:
        """Input embeddings plus an untied lm_head (what structured pruning never touches)."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    def non_embedding_params(self) -> int:
        return self.num_hidden_layers * self.layer_params() + self.hidden_size  # + final norm

    def params(self) -> int:
        return self.non_embedding_params() + self.embedding_params()

    def flops_per_token(self, context: int = 128) -> int:
        """Forward FLOPs per token (2 per multiply-add) at a given context length, lm_head included."""
        h, d, q = self.hidden_size, self.head_dim, self.num_attention_heads
        matmul_params = self.num_hidden_layers * (self.attention_params_per_layer() + 3 * h * self.intermediate_size)
        attn_scores = self.num_hidden_layers * 2 * q * d * context  # QK^T and AV
        return 2 * (matmul_params + attn_scores + self.vocab_size * h)

    def after(
        self, *, mlp_removed: int = 0, kv_groups_removed: int = 0, layers_removed: int = 0, hidden_removed: int = 0
    ) -> ModelShape:
        """The shape after uniform removal: same counts from every layer; head_dim stays."""
        g = self.group_size
        return replace(
            self,
            intermediate_size=self.intermediate_size - mlp_removed,
            num_key_value_heads=self.num_key_value_heads - kv_groups_removed,
            num_attention_heads=self.num_attention_heads - kv_groups_removed * g,
            num_hidden_layers=self.num_hidden_layers - layers_removed,
            hidden_size=self.hidden_size - hidden_removed,
        )

    def to_dict(self) -> dict:
        return asdict(self)
