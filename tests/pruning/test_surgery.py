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


@torch.no_grad()
def _zero(model, plan: PruningPlan):
    """Zero the removed units' contribution to the residual stream without changing any shape."""
    a = get_adapter(model)
    shape = ModelShape.from_config(model.config)
    for i, layer in enumerate(a.layers(model)):
        down, o = a.mlp_out_linear(layer), a.attn_out_linear(layer)
        for n in plan.mlp_neurons.get(i, []):
            down.weight[:, n] = 0
        for g in plan.kv_groups.get(i, []):
            for h in range(g * shape.group_size, (g + 1) * shape.group_size):
                o.weight[:, h * shape.head_dim:(h + 1) * shape.head_dim] = 0
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


def test_gemma2_layer_types_resliced():
    model, _ = _model("gemma2")
    before = list(model.config.layer_types)
    apply_plan(model, PruningPlan(layers=[0]))
    assert model.config.layer_types == before[1:]
    assert [a.self_attn.layer_idx for a in model.model.layers] == [0, 1, 2]


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
