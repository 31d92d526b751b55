"""MoE surgery invariants on a tiny model of every MoE family.

Removing experts == masking their router logits to -inf before the softmax (each family's own
softmax -> top-k -> renormalisation order, see its adapter); removing expert / shared-expert neurons ==
zeroing their down-projection columns; stock reload is exact; layer removal keeps dense layers dense.
"""

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from prunetune.builtin.tiny import tiny_model
from prunetune.checkpoint import save_checkpoint
from prunetune.errors import UserError
from prunetune.models import get_adapter
from prunetune.models.shape import ModelShape
from prunetune.pruning.plan import PruningPlan
from prunetune.pruning.surgery import apply_plan


def _inputs(vocab, seed=1, batch=2, length=12):
    return torch.randint(3, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def _model(family):
    model, tok = tiny_model(family)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # larger than HF's init so every unit (and the routing) matters
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            else:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model, tok


def _mask_routers(model, removed: dict[int, list[int]]):
    """Reference: each router's logits with the removed experts at -inf, then the family's routing."""
    a = get_adapter(model)
    norm = a.moe.flag(model.config)
    for i, experts in removed.items():
        router = a.moe.router_module(a.layers(model)[i])
        original = router.forward

        def forward(hidden_states, original=original, experts=experts, k=router.top_k):
            logits, _, _ = original(hidden_states)
            masked = logits.float().clone()
            masked[:, experts] = float("-inf")
            top, idx = torch.topk(torch.softmax(masked, dim=-1), k, dim=-1)
            if norm:
                top = top / top.sum(dim=-1, keepdim=True)
            return logits, top.to(logits.dtype), idx

        router.forward = forward


def _random_plan(model, experts=0, neurons=0, shared=0, seed=7):
    s = ModelShape.from_config(model.config)
    g = torch.Generator().manual_seed(seed)
    pick = lambda n, k: sorted(torch.randperm(n, generator=g)[:k].tolist())  # noqa: E731
    W = s.moe_intermediate_size
    return PruningPlan(
        experts={i: pick(s.num_experts, experts) for i in s.moe_layers} if experts else {},
        expert_neurons={i: [e * W + n for e in range(s.num_experts) for n in pick(W, neurons)]
                        for i in s.moe_layers} if neurons else {},
        shared_expert_neurons={i: pick(s.shared_expert_intermediate_size, shared) for i in s.moe_layers}
        if shared else {},
    )


def test_reference_router_matches_the_family_when_nothing_is_masked(moe_family):
    model, _ = _model(moe_family)
    ids = _inputs(model.config.vocab_size)
    ref = copy.deepcopy(model)
    _mask_routers(ref, {i: [] for i in ModelShape.from_config(model.config).moe_layers})
    assert torch.allclose(ref(ids).logits, model(ids).logits, atol=1e-6)


def test_removing_experts_equals_masking_their_router_logits(moe_family):
    model, _ = _model(moe_family)
    plan = _random_plan(model, experts=3)
    ids = _inputs(model.config.vocab_size)
    ref = copy.deepcopy(model)
    _mask_routers(ref, plan.experts)
    expected, full = ref(ids).logits, model(ids).logits
    apply_plan(model, plan)
    assert torch.allclose(model(ids).logits, expected, atol=1e-5)
    assert not torch.allclose(full, expected, atol=1e-3)  # the removed experts were routed to
    assert sum(p.numel() for p in model.parameters()) == plan.shape_after(
        ModelShape.from_config(ref.config)).params() == ModelShape.from_config(model.config).params()


def test_removing_expert_neurons_equals_zeroing_them(moe_family):
    model, _ = _model(moe_family)
    shape = ModelShape.from_config(model.config)
    plan = _random_plan(model, neurons=12, shared=20 if shape.shared_expert_intermediate_size else 0)
    a, ids = get_adapter(model), _inputs(model.config.vocab_size)
    zeroed = copy.deepcopy(model)
    with torch.no_grad():
        for i in shape.moe_layers:
            layer = a.layers(zeroed)[i]
            down = a.moe.experts_module(layer).down_proj
            for j in plan.expert_neurons[i]:
                down[j // shape.moe_intermediate_size, :, j % shape.moe_intermediate_size] = 0
            for n in plan.shared_expert_neurons.get(i, []):
                getattr(a.moe.shared_module(layer), a.mlp_out).weight[:, n] = 0
    expected, full = zeroed(ids).logits, model(ids).logits
    apply_plan(model, plan)
    assert torch.allclose(model(ids).logits, expected, atol=1e-5)
    assert not torch.allclose(full, expected, atol=1e-3)
    assert ModelShape.from_config(model.config) == plan.shape_after(shape)


def test_reload_is_exact_and_dense_layers_stay_dense(moe_family, tmp_path):
    model, tok = _model(moe_family)
    shape = ModelShape.from_config(model.config)
    plan = _random_plan(model, experts=2, neurons=8, shared=16 if shape.shared_expert_intermediate_size else 0)
    plan.layers = [0]
    if not shape.qk_norm_full:
        plan.kv_groups = {i: [1] for i in range(shape.num_hidden_layers)}
    model.config.output_router_logits = True
    state = {n: {"exp_avg": p.detach().clone()} for n, p in model.named_parameters()}
    state = apply_plan(model, plan, optimizer_state=state)
    for n, p in model.named_parameters():  # fused expert moments cut exactly like the weights
        assert torch.equal(state[n]["exp_avg"], p.detach())
    after = ModelShape.from_config(model.config)
    assert after.moe_layers == plan.shape_after(shape).moe_layers
    kinds = [type(layer.mlp).__name__ for layer in model.model.layers]
    assert [i for i, k in enumerate(kinds) if "Sparse" in k] == list(after.moe_layers)
    ids = _inputs(model.config.vocab_size)
    out = save_checkpoint(model, tok, tmp_path / "pruned", history=[plan.to_dict()])
    reloaded, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert torch.equal(reloaded(ids).logits, model(ids).logits)
    assert reloaded.config.output_router_logits
    res = reloaded(ids, labels=ids)  # the family's load-balancing loss still runs over the experts left
    assert res.aux_loss is not None and torch.isfinite(res.loss)
    assert PruningPlan.from_dict(plan.to_dict()) == plan


@pytest.mark.parametrize(
    "plan_kw, match",
    [
        (dict(experts={0: [0]}), "dense model"),
    ],
)
def test_expert_units_on_a_dense_model_are_user_errors(plan_kw, match):
    model, _ = tiny_model("llama")
    with pytest.raises(UserError, match=match):
        apply_plan(model, PruningPlan(**plan_kw))


def test_too_many_experts_for_top_k_is_user_error():
    model, _ = _model("mixtral")  # 8 experts, top-2
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(UserError, match="num_experts_per_tok=2"):
        apply_plan(model, _random_plan(model, experts=7))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(UserError, match="KV groups"):
        apply_plan(_model("olmoe")[0], PruningPlan(kv_groups={i: [0] for i in range(4)}))
    with pytest.raises(UserError, match="no dense MLP"):
        apply_plan(model, PruningPlan(mlp_neurons={i: [0] for i in range(4)}))
