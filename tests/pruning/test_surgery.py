"""Surgery invariants: physical removal == zeroing the units' contribution; stock reload is exact."""

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from prunetune.builtin.tiny import tiny_model
from prunetune.checkpoint import save_checkpoint
from prunetune.errors import UserError
from prunetune.models import get_adapter
from prunetune.models.shape import ModelShape
from prunetune.pruning.plan import Constraints, PruningPlan
from prunetune.pruning.surgery import apply_plan


def _inputs(vocab, seed=1, batch=2, length=12):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (batch, length), generator=g)


def _model(family, dtype=torch.float32, **overrides):
    model, tok = tiny_model(family, dtype=dtype, **overrides)
    # larger random weights than HF's 0.02 init, so removed units really matter to the logits
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32).to(dtype) * 0.2)
            else:
                p.add_(torch.randn(p.shape, generator=g, dtype=torch.float32).to(dtype) * 0.05)
    return model, tok


class _KeptRowsNorm(torch.nn.Module):
    """A norm over the whole q or k width (OLMo 2) taken over the kept rows only: with the removed heads'
    o_proj columns zeroed, their rows need no value, and the kept heads must not see them in the RMS."""

    def __init__(self, norm: torch.nn.Module, keep: torch.Tensor):
        super().__init__()
        self.sub, self.keep = copy.deepcopy(norm), keep
        self.sub.weight = torch.nn.Parameter(norm.weight[keep])

    def forward(self, x):
        out = x.clone()
        out[..., self.keep] = self.sub(x[..., self.keep])
        return out


@torch.no_grad()
def _zero(model, plan: PruningPlan):
    """Zero the removed units' contribution to the residual stream without changing any shape."""
    a = get_adapter(model)
    shape = ModelShape.from_config(model.config)
    d, gs = shape.head_dim, shape.group_size
    for i, layer in enumerate(a.layers(model)):
        down, o = a.mlp_out_linear(layer), a.attn_out_linear(layer)
        for n in plan.mlp_neurons.get(i, []):
            down.weight[:, n] = 0
        for g in plan.kv_groups.get(i, []):
            o.weight[:, g * gs * d:(g + 1) * gs * d] = 0
        removed = plan.kv_groups.get(i, [])
        for rb in a.attn_row_norms(layer) if removed else []:
            width, group_rows = {"q": (shape.num_attention_heads * d, gs * d), "k": (shape.num_key_value_heads * d, d)}[
                rb.blocks[0]]
            keep = torch.tensor([r for r in range(width) if r // group_rows not in removed])
            attn = a.attn(layer)
            name = next(n for n, m in attn.named_children() if m is rb.linear)
            setattr(attn, name, _KeptRowsNorm(rb.linear, keep))
        if i in plan.layers:
            for lin in (down, o):
                lin.weight.zero_()
                if lin.bias is not None:
                    lin.bias.zero_()


def _plan(model, mlp=0, kv=0, layers=()):
    shape = ModelShape.from_config(model.config)
    g = torch.Generator().manual_seed(7)
    mlp_idx = {i: sorted(torch.randperm(shape.intermediate_size, generator=g)[:mlp].tolist())
               for i in range(shape.num_hidden_layers)} if mlp else {}
    kv_idx = {i: sorted(torch.randperm(shape.num_key_value_heads, generator=g)[:kv].tolist())
              for i in range(shape.num_hidden_layers)} if kv else {}
    return PruningPlan(mlp_neurons=mlp_idx, kv_groups=kv_idx, layers=list(layers))


@pytest.mark.parametrize("kind", ["mlp", "kv", "layers", "all"])
def test_removal_equals_zeroing(family, kind):
    model, _ = _model(family)
    amounts = {"mlp": dict(mlp=40), "kv": dict(kv=1), "layers": dict(layers=[1, 2]),
               "all": dict(mlp=33, kv=1, layers=[0])}[kind]
    plan = _plan(model, **amounts)
    ids = _inputs(model.config.vocab_size)
    zeroed = copy.deepcopy(model)
    _zero(zeroed, plan)
    ref = zeroed(ids).logits
    full = model(ids).logits
    apply_plan(model, plan)
    out = model(ids).logits
    assert torch.allclose(out, ref, atol=1e-5), (out - ref).abs().max()
    assert not torch.allclose(full, ref, atol=1e-3)  # the removed units did matter
    after = plan.shape_after(ModelShape.from_config(zeroed.config))
    assert ModelShape.from_config(model.config) == after
    assert sum(p.numel() for p in model.parameters()) == after.params()


def test_reload_with_stock_from_pretrained(family, tmp_path):
    model, tok = _model(family)
    plan = _plan(model, mlp=32, kv=1, layers=[2])
    apply_plan(model, plan)
    ids = _inputs(model.config.vocab_size)
    out = save_checkpoint(model, tok, tmp_path / "pruned", history=[plan.to_dict()])
    reloaded, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert torch.equal(reloaded(ids).logits, model(ids).logits)
    if getattr(model.config, "layer_types", None) is not None:
        assert reloaded.config.layer_types == model.config.layer_types
    # cached generation equals uncached greedy decoding
    prompt = ids[:1, :6]
    gen = reloaded.generate(prompt, max_new_tokens=8, do_sample=False, use_cache=True, pad_token_id=0)
    seq = prompt
    for _ in range(8):
        nxt = reloaded(seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], dim=1)
    assert torch.equal(gen, seq)


@pytest.mark.parametrize("family, key", [("gemma2", "layer_types"), ("gemma3_text", "layer_types"),
                                         ("smollm3", "no_rope_layers")])
def test_per_layer_config_lists_follow_the_layers(family, key):
    model, _ = _model(family)
    before = list(getattr(model.config, key))
    assert len(set(before)) > 1  # a mixed pattern, so a wrong slice shows
    apply_plan(model, PruningPlan(layers=[0]))
    assert getattr(model.config, key) == before[1:]
    assert [a.self_attn.layer_idx for a in model.model.layers] == [0, 1, 2]


def test_granite_multipliers_survive_pruning_and_reload(tmp_path):
    model, tok = _model("granite")
    keys = ("embedding_multiplier", "residual_multiplier", "attention_multiplier", "logits_scaling")
    before = {k: getattr(model.config, k) for k in keys}
    assert all(v != 1.0 for v in before.values())  # not the defaults, so a dropped one shows
    apply_plan(model, _plan(model, mlp=16, kv=1, layers=[1]))
    reloaded = AutoModelForCausalLM.from_pretrained(save_checkpoint(model, tok, tmp_path / "m"))
    assert {k: getattr(reloaded.config, k) for k in keys} == before


def test_olmo2_whole_width_qk_norms_are_sliced_with_their_heads():
    model, _ = _model("olmo2")
    attn = model.model.layers[0].self_attn
    q_w, k_w = attn.q_norm.weight.detach().clone(), attn.k_norm.weight.detach().clone()
    apply_plan(model, PruningPlan(kv_groups={i: [0] for i in range(4)}))
    assert torch.equal(attn.q_norm.weight, q_w[32:]) and torch.equal(attn.k_norm.weight, k_w[16:])


def test_bf16_surgery_keeps_dtype():
    model, _ = _model("llama", dtype=torch.bfloat16)
    apply_plan(model, _plan(model, mlp=16, kv=1, layers=[3]))
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert torch.isfinite(model(_inputs(model.config.vocab_size)).logits.float()).all()


def test_tied_embeddings_stay_tied(tmp_path):
    model, tok = _model("gemma2")
    apply_plan(model, _plan(model, mlp=16))
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_optimizer_state_sliced_and_renamed():
    model, _ = _model("llama")
    state = {n: {"exp_avg": p.detach().clone(), "exp_avg_sq": p.detach().clone() * 2, "step": torch.tensor(3.0)}
             for n, p in model.named_parameters()}
    plan = _plan(model, mlp=10, kv=1, layers=[1])
    new_state = apply_plan(model, plan, optimizer_state=state)
    params = dict(model.named_parameters())
    assert set(new_state) == set(params)
    for n, p in params.items():  # moments were cut exactly like the weights they belong to
        assert torch.equal(new_state[n]["exp_avg"], p.detach())
        assert torch.equal(new_state[n]["exp_avg_sq"], p.detach() * 2)


@pytest.mark.parametrize(
    "plan_kwargs, message",
    [
        (dict(mlp=96), "leaves none"),
        (dict(kv=2), "leaves none"),
        (dict(layers=[0, 1, 2, 3]), "leaves none"),
        (dict(layers=[7]), "out of range"),
    ],
)
def test_invalid_plans_rejected_before_cutting(plan_kwargs, message):
    model, _ = _model("llama")
    before = {n: p.clone() for n, p in model.state_dict().items()}
    with pytest.raises(UserError, match=message):
        apply_plan(model, _plan(model, **plan_kwargs))
    after = model.state_dict()
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_constraints():
    model, _ = _model("llama")
    shape = ModelShape.from_config(model.config)
    with pytest.raises(UserError, match="round_to"):
        _plan(model, mlp=10).validate(shape, Constraints(round_to=16))
    _plan(model, mlp=16).validate(shape, Constraints(round_to=16))
    with pytest.raises(UserError, match="tensor_parallel"):
        _plan(model, kv=1).validate(shape, Constraints(tensor_parallel=2))
    uneven = PruningPlan(mlp_neurons={0: [1], 1: [1, 2], 2: [1], 3: [1]})
    with pytest.raises(UserError, match="same number"):
        uneven.validate(shape)


@pytest.mark.parametrize("family, allowed", [("llama", False), ("gemma3_text", False), ("olmo2", True)])
def test_heads_that_do_not_divide_hidden(family, allowed, tmp_path):
    """Llama and Gemma configs reject hidden_size % num_attention_heads != 0: refused before any cut."""
    model, tok = tiny_model(family, hidden_size=96, num_attention_heads=6, num_key_value_heads=6)
    plan = PruningPlan(kv_groups={i: [0] for i in range(4)})  # 5 heads left
    if not allowed:
        with pytest.raises(UserError, match="5 query heads left do not divide hidden_size=96"):
            apply_plan(model, plan)
        assert model.model.layers[0].self_attn.q_proj.out_features == 96
        return
    apply_plan(model, plan)
    reloaded = AutoModelForCausalLM.from_pretrained(save_checkpoint(model, tok, tmp_path / "m"))
    assert reloaded.config.num_attention_heads == 5
