"""Taylor scorers (MLP neurons and KV groups): equal to a hand computation with plain autograd for every
option, independent of batching per sample, and a damaged unit ranks lowest."""

import itertools

import pytest
import torch

from prunetune.builtin.tiny import tiny_model
from prunetune.errors import UserError
from prunetune.pruning.importance import calibration_batches, score_kv_groups, score_mlp
from tests.pruning.importance.conftest import TEXTS, lowest

OPTIONS = [
    {"per": per, "reduce": reduce, "order": order}
    for per, reduce, order in itertools.product(
        ("sample", "batch", "calibration"), ("element", "unit"), ("first", "second")
    )
]
KV_SHAPE = {"hidden_size": 96, "num_attention_heads": 6, "num_key_value_heads": 3}


def _steps(tok, per: str) -> list[list[dict]]:
    """The loss of each step is summed over its batches: one text alone, one batch of 4, or everything."""
    batches = calibration_batches(tok, TEXTS, max_length=48, batch_size=4)
    if per == "sample":
        return [[calibration_batches(tok, [t], max_length=48, batch_size=1)[0]] for t in TEXTS]
    return [[b] for b in batches] if per == "batch" else [batches]


def _reference(model, tok, opts: dict, units) -> torch.Tensor:
    """sum over steps of term(w * g) per weight (element) or term(sum of w * g) per unit, / loss tokens.

    `units(layer)` -> per unit, a list of weight views (slices of parameters) that belong to it.
    """
    layers = list(model.model.layers)
    params = [p for p in model.parameters() if p.requires_grad]
    term = (lambda x: x.abs()) if opts["order"] == "first" else (lambda x: 0.5 * x.square())
    total, tokens = None, 0
    for step in _steps(tok, opts["per"]):
        loss = 0.0
        for b in step:
            n = int(b["attention_mask"][:, 1:].sum())
            labels = b["input_ids"].masked_fill(b["attention_mask"] == 0, -100)
            loss = loss + model(**b, labels=labels).loss * n
            tokens += n
        grads = dict(zip(map(id, params), torch.autograd.grad(loss, params, allow_unused=True), strict=True))
        scores = []
        for layer in layers:
            row = []
            for views in units(layer, grads):
                wg = [w.detach() * g for w, g in views]
                if opts["reduce"] == "element":
                    row.append(sum(term(x).sum() for x in wg))
                else:
                    row.append(term(sum(x.sum() for x in wg)))
            scores.append(torch.stack(row))
        scores = torch.stack(scores)
        total = scores if total is None else total + scores
    return total / tokens


def _mlp_units(layer, grads):
    """Llama neuron j: gate_proj and up_proj row j, down_proj column j (projections named on purpose:
    this reference must not share the adapter's view of the model)."""
    mlp = layer.mlp
    pairs = [(p, grads[id(p)]) for p in (mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight)]
    (gw, gg), (uw, ug), (dw, dg) = pairs
    return [[(gw[j], gg[j]), (uw[j], ug[j]), (dw[:, j], dg[:, j])] for j in range(gw.shape[0])]


def _kv_units(layer, grads, d=16, group_size=2):
    """Qwen2 group g: q rows of its group_size heads, k and v rows of its head, their biases, o_proj columns."""
    attn = layer.self_attn
    out = []
    for g in range(3):
        q = slice(g * group_size * d, (g + 1) * group_size * d)
        kv = slice(g * d, (g + 1) * d)
        views = []
        for proj, rows in ((attn.q_proj, q), (attn.k_proj, kv), (attn.v_proj, kv)):
            views += [
                (proj.weight[rows], grads[id(proj.weight)][rows]),
                (proj.bias[rows], grads[id(proj.bias)][rows]),
            ]
        views.append((attn.o_proj.weight[:, q], grads[id(attn.o_proj.weight)][:, q]))
        out.append(views)
    return out


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(o.values()))
def test_mlp_taylor_equals_hand_computation(opts, batches):
    model, tok = tiny_model("llama")
    got = score_mlp(model, "taylor", batches, options=opts, progress=False)
    expected = _reference(model, tok, opts, _mlp_units)
    assert got.shape == expected.shape == (4, 96)
    assert (got > 0).all()
    assert torch.allclose(got, expected, rtol=1e-3, atol=1e-9 * float(expected.abs().max()))


@pytest.mark.parametrize("opts", OPTIONS[::3], ids=lambda o: "-".join(o.values()))
def test_kv_taylor_equals_hand_computation(opts, batches):
    model, tok = tiny_model("qwen2", **KV_SHAPE)  # qwen2: q/k/v biases are part of the group
    got = score_kv_groups(model, "taylor", batches, options=opts, progress=False)
    expected = _reference(model, tok, opts, _kv_units)
    assert got.shape == expected.shape == (4, 3)
    assert torch.allclose(got, expected, rtol=1e-3, atol=1e-9 * float(expected.abs().max()))


def test_element_wise_differs_from_the_signed_sum(batches):
    """The default does not collapse into the earlier |sum of w * g| (which this option combination still is)."""
    model, _ = tiny_model("llama")
    new = score_mlp(model, "taylor", batches, progress=False)
    old = score_mlp(
        model, "taylor", batches, options={"per": "calibration", "reduce": "unit"}, progress=False
    )
    assert (new >= old - 1e-7).all()  # |sum_s sum_i x| <= sum_s sum_i |x|
    assert (new > 1.5 * old).float().mean() > 0.5


@pytest.mark.parametrize("per", ["sample", "batch"])
def test_per_sample_does_not_depend_on_batching(family, per):
    model, tok = tiny_model(family)
    one = score_mlp(
        model, "taylor", calibration_batches(tok, TEXTS, batch_size=1), options={"per": per}, progress=False
    )
    four = score_mlp(
        model, "taylor", calibration_batches(tok, TEXTS, batch_size=4), options={"per": per}, progress=False
    )
    if per == "sample":
        assert torch.allclose(one, four, rtol=1e-4)
    else:  # batch gradients of 4 texts: terms cancel between the texts of a batch
        assert not torch.allclose(one, four, rtol=1e-2)


@torch.no_grad()
def _damage_neurons(model, neurons):
    for layer in model.model.layers:
        layer.mlp.down_proj.weight[:, neurons] *= 1e-3


@pytest.mark.parametrize("opts", [{}, {"order": "second"}, {"per": "calibration"}])
def test_damaged_neurons_rank_lowest(batches, opts):
    """Neurons whose output is scaled by 1e-3 barely matter: every layer ranks them lowest."""
    model, _ = tiny_model("llama")
    damaged = [5, 30, 61]
    _damage_neurons(model, damaged)
    scores = score_mlp(model, "taylor", batches, options=opts, progress=False)
    assert lowest(scores, len(damaged)) == [set(damaged)] * 4


@pytest.mark.parametrize("group", [0, 2])
def test_damaged_kv_group_ranks_lowest(batches, group):
    model, _ = tiny_model("llama", **KV_SHAPE)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[:, group * 32 : (group + 1) * 32] *= 1e-3
    scores = score_kv_groups(model, "taylor", batches, progress=False)
    assert scores.argmin(dim=1).tolist() == [group] * 4


def test_bad_options(batches):
    model, _ = tiny_model("llama")
    with pytest.raises(
        UserError, match="options.per: must be one of sample, batch, calibration, got 'token'"
    ):
        score_mlp(model, "taylor", batches, options={"per": "token"})
    with pytest.raises(UserError, match="options.order"):
        score_kv_groups(model, "taylor", batches, options={"order": 2})


def test_kv_default_is_the_group_sum_over_the_calibration_set(batches):
    """KV groups default to reduce=unit, per=calibration (measured better on SmolLM2 than element-wise)."""
    model, _ = tiny_model("llama", **KV_SHAPE)
    default = score_kv_groups(model, "taylor", batches, progress=False)
    explicit = score_kv_groups(
        model, "taylor", batches, options={"per": "calibration", "reduce": "unit"}, progress=False
    )
    element = score_kv_groups(
        model, "taylor", batches, options={"per": "sample", "reduce": "element"}, progress=False
    )
    assert torch.equal(default, explicit)
    assert not torch.allclose(default, element)
