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


# ---- the measures beside held-out loss (issue 27) ------------------------------------------------
PAIRS = [("Question: 3 + 5?\nAnswer:", " 3 + 5 = 8\n#### 8"), ("Q: name?", " first line\nlast line")]


def test_answer_pairs_score_only_the_final_answer():
    from prunetune.pruning.damage import answer_pairs, held_out_batches

    assert answer_pairs(PAIRS) == [("Question: 3 + 5?\nAnswer: 3 + 5 = 8\n####", " 8"),
                                   ("Q: name? first line\n", "last line")]
    assert answer_pairs([("q", " no answer ####")]) == []  # nothing after the mark: nothing to score
    _, tok = tiny_model("llama")
    full, ans = held_out_batches(tok, PAIRS), held_out_batches(tok, answer_pairs(PAIRS))
    scored = lambda bs: sum(int((b["labels"] != -100).sum()) for b in bs)  # noqa: E731
    assert 0 < scored(ans) < scored(full)


def test_kl_to_the_dense_model_is_zero_for_it_and_grows_with_the_cut():
    from prunetune.pruning.damage import _next_token_logprobs, dense_reference, kl_to_reference
    from prunetune.pruning.importance.calibration import scoring_pass

    model, tok = tiny_model("llama")
    prompts = [p for p, _ in PAIRS]
    ref = dense_reference(model, tok, prompts, max_new_tokens=6, top_k=4)
    assert abs(kl_to_reference(model, ref)) < 1e-5
    batches = calibration_batches(tok, TEXTS * 2, batch_size=2)
    scores = score_mlp(model, "activation", batches, progress=False)
    kls = []
    for k in (16, 48):
        cut, _ = tiny_model("llama")
        with torch.no_grad():
            apply_plan(cut, plan_from_scores(mlp_scores=scores, mlp_per_layer=k))
        kls.append(kl_to_reference(cut, ref))
        # with every token kept the coarsened KL is the full KL; with 4 kept it is a lower bound of it
        full = dense_reference(model, tok, prompts, max_new_tokens=6, top_k=len(tok))
        exact = kl_to_reference(cut, full)
        with scoring_pass(model), scoring_pass(cut):
            b = full.batches[0]
            p, q = _next_token_logprobs(model, b), _next_token_logprobs(cut, b)
            mask = b["labels"][:, 1:] != -100
            direct = (p.exp() * (p - q)).sum(-1)[mask]
        assert kls[-1] <= exact + 1e-6
        assert abs(float(direct.sum()) / int(mask.sum()) - kl_to_reference(cut, type(full)(
            full.batches[:1], full.top_ids[:1], full.top_logprobs[:1]))) < 1e-4
    assert 0 < kls[0] < kls[1]
