"""Damage measured by zeroing the lowest neurons equals the loss of the model with them removed."""

import torch

from prunetune.builtin.tiny import tiny_model
from prunetune.pruning.damage import candidate_cuts, held_out_loss, mlp_cut_losses
from prunetune.pruning.importance import calibration_batches, score_mlp
from prunetune.pruning.select import plan_from_scores
from prunetune.pruning.surgery import apply_plan

TEXTS = ["Question: Tom has 3 apples and buys 5 more. Answer: 3 + 5 = 8. #### 8", "def add(a, b): return a + b"]


def test_zeroed_cut_losses_equal_the_pruned_models_losses(family):
    model, tok = tiny_model(family)
    batches = calibration_batches(tok, TEXTS * 2, batch_size=2)
    scores = score_mlp(model, "activation", batches, progress=False)
    before = {n: p.clone() for n, p in model.state_dict().items()}
    counts = [48, 16]
    zeroed = mlp_cut_losses(model, scores, counts, batches)
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())  # decide, never edit
    for k, loss in zip(counts, zeroed):
        cut, _ = tiny_model(family)
        with torch.no_grad():
            apply_plan(cut, plan_from_scores(mlp_scores=scores, mlp_per_layer=k))
        assert abs(held_out_loss(cut, batches) - loss) < 1e-4, (family, k)
    assert zeroed[0] != held_out_loss(model, batches)


def test_candidate_cuts_halve_down_to_one_unit():
    assert candidate_cuts(208, 8) == [208, 104, 48, 24, 8]
    assert candidate_cuts(5, 8) == [5] and candidate_cuts(0, 8) == []


def test_a_plan_from_precomputed_scores_is_the_plan_scored_inside(family):
    from prunetune.pruning.prune import StepSpec, decide

    model, tok = tiny_model(family)
    batches = calibration_batches(tok, TEXTS * 2, batch_size=2)
    spec = StepSpec(mlp_neurons=24)
    scores = score_mlp(model, "activation", batches, progress=False)
    assert decide(model, spec, batches, mlp_scores=scores).mlp_neurons == decide(model, spec, batches).mlp_neurons
