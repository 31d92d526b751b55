import pytest
import torch
from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

from prunetune.builtin.tiny import tiny_model
from prunetune.recovery import GlobalSchedule, recover
from prunetune.recovery.schedule import export_optimizer_state, make_optimizer
from tests.recovery.helpers import MEMO, TEMPLATE

CFG = {"lr": 1e-3, "weight_decay": 0.0, "betas": (0.9, 0.999), "eps": 1e-8}


@pytest.mark.parametrize(
    "kind,ref", [("cosine", get_cosine_schedule_with_warmup), ("linear", get_linear_schedule_with_warmup)]
)
def test_global_schedule_matches_transformers_at_any_offset(kind, ref):
    total, warm = 40, 0.1
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = ref(opt, num_warmup_steps=4, num_training_steps=total)
    expected = []
    for _ in range(total):
        expected.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    # A call that is the slice [17, 27) of the global schedule sees exactly the reference's lrs there.
    g = GlobalSchedule(total_steps=total, start_step=17, warmup_ratio=warm, lr_scheduler_type=kind)
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    local = g.lambda_lr(opt2)
    got = []
    for _ in range(10):
        got.append(local.get_last_lr()[0])
        opt2.step()
        local.step()
    assert got == pytest.approx(expected[17:27])
    assert got[0] > 0.5  # no second warmup mid-way


def test_recover_runs_one_slice_of_the_global_schedule(tmp_path):
    model, tok = tiny_model("llama")
    g = GlobalSchedule(total_steps=20, start_step=10, warmup_ratio=0.1, lr_scheduler_type="cosine")
    res = recover(
        model,
        tok,
        "cpt",
        MEMO,
        {"template": TEMPLATE, "max_length": 32, "max_steps": 3, "learning_rate": 1e-3},
        work_dir=tmp_path,
        schedule=g,
        progress=False,
    )
    lrs = [m["lr"] for m in res.metrics]
    assert lrs == pytest.approx([1e-3 * g.multiplier(10 + k) for k in range(3)])
    assert [m["global_step"] for m in res.metrics] == [11, 12, 13]


def test_optimizer_state_round_trips_by_name_and_skips_resized():
    model, _ = tiny_model("llama")
    opt, _ = make_optimizer(model, **CFG)
    model(input_ids=torch.tensor([[3, 4, 5, 6]]), labels=torch.tensor([[3, 4, 5, 6]])).loss.backward()
    opt.step()
    state = export_optimizer_state(model, opt)
    assert set(state) == {n for n, _ in model.named_parameters()}
    assert set(state["model.norm.weight"]) == {"exp_avg", "exp_avg_sq", "step"}
    # A resized parameter (as after pruning) is skipped, everything else is restored exactly.
    state["model.layers.0.mlp.up_proj.weight"]["exp_avg"] = torch.zeros(3, 3)
    opt2, skipped = make_optimizer(model, **CFG, optimizer_state=state)
    assert skipped == 1
    back = export_optimizer_state(model, opt2)
    assert "model.layers.0.mlp.up_proj.weight" not in back
    for name in ("model.norm.weight", "model.layers.1.self_attn.q_proj.weight"):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(back[name][key], state[name][key])


def test_carried_state_continues_adam_across_calls(tmp_path):
    model, tok = tiny_model("llama")
    cfg = {"template": TEMPLATE, "max_length": 32, "max_steps": 2, "learning_rate": 1e-3}
    first = recover(model, tok, "cpt", MEMO, cfg, work_dir=tmp_path / "a", progress=False)
    assert float(first.optimizer_state["model.norm.weight"]["step"]) == 2
    second = recover(
        model,
        tok,
        "cpt",
        MEMO,
        cfg,
        work_dir=tmp_path / "b",
        optimizer_state=first.optimizer_state,
        progress=False,
    )
    assert float(second.optimizer_state["model.norm.weight"]["step"]) == 4
    assert second.info["optimizer_state_skipped"] == 0


def test_token_budget_sets_the_steps(tmp_path):
    model, tok = tiny_model("llama")
    cfg = {"template": TEMPLATE, "max_length": 16, "per_device_train_batch_size": 2, "max_tokens": 100}
    res = recover(model, tok, "cpt", MEMO, cfg, work_dir=tmp_path, progress=False)
    assert res.steps == 4 and res.tokens_seen == 4 * 2 * 16  # ceil(100 / 32) full batches
