"""Recovery from the dense model's own outputs in the loop: teacher solutions generated once per run into
the run directory and shared through a cache, on-policy distillation, teacher correction, bad input."""

import json
from pathlib import Path

import pytest

from prunetune.errors import UserError
from prunetune.io import read_jsonl
from prunetune.loop import run, teaching
from prunetune.loop.planner import validate_recipe
from prunetune.loop.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "recipes" / "smoke.yaml"
FAST = ["iterations=1", "schedule.kv_groups={}", "evaluation.limit=2", "evaluation.max_new_tokens=4",
        "prune.calibration_samples=4", "recovery.chunk_size=4", "recovery.config.max_steps=2"]
SEQKD = ["recovery.method=sft", "recovery.prompts={sources: [arith]}", "recovery.config.max_length=512",
         "recovery.teacher_data={max_new_tokens: 4, batch_size: 4}"]


def _recipe(out, *overrides):
    return load_recipe(SMOKE, [f"output_dir={out}", *FAST, *overrides])


def test_teacher_solutions_are_made_once_and_a_shared_cache_is_reused(tmp_path, monkeypatch):
    recipe = _recipe(tmp_path / "a", *SEQKD)
    run(recipe, progress=False)
    cache = tmp_path / "a" / teaching.CACHE_NAME
    rows = [json.loads(x) for x in cache.read_text().splitlines()]
    assert "meta" in rows[0] and len(rows) == 1 + 4  # chunk_size x iterations prompts, each solved once
    assert all(r["source"] == "arith" and r["prompt"].rstrip().endswith("Answer:") for r in rows[1:])
    trained = [e for e in read_jsonl(tmp_path / "a" / "metrics.jsonl") if e.get("event") == "recover"]
    assert len(trained) == 2
    # a second run pointed at that cache (teacher_data.cache) generates nothing: the teacher is never asked
    monkeypatch.setattr(teaching, "teacher_generate", lambda *a, **k: pytest.fail("the teacher was asked again"))
    second = _recipe(tmp_path / "b", *SEQKD[:-1], f"recovery.teacher_data={{max_new_tokens: 4, batch_size: 4, cache: {cache}}}")
    assert run(second, progress=False)["completed_iterations"] == 1
    assert cache.read_text().splitlines() == [json.dumps(r) for r in rows]


def test_a_corrupt_cache_fails_before_any_work(tmp_path):
    bad = tmp_path / "gen.jsonl"
    bad.write_text('{"meta": \n')  # cut short by a crash of something else
    recipe = _recipe(tmp_path / "run", *SEQKD[:-1], f"recovery.teacher_data={{cache: {bad}}}")
    with pytest.raises(UserError, match="gen.jsonl':1: not JSON"):
        run(recipe, progress=False)
    assert not (tmp_path / "run" / "baseline").exists()


def test_onpolicy_with_prompts_and_a_corrected_teacher_runs_in_the_loop(tmp_path):
    recipe = _recipe(tmp_path / "run", "recovery.method=onpolicy", "recovery.prompts={sources: [arith]}",
                     "recovery.config={max_steps: 2, max_completion_length: 4, per_device_train_batch_size: 2}",
                     "recovery.teacher_correction={records: 8, config: {max_steps: 1, max_length: 64}}")
    assert run(recipe, progress=False)["completed_iterations"] == 1
    assert (tmp_path / "run" / teaching.CORRECTED_NAME / "config.json").is_file()  # kept for a resume
    events = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [e["step"] for e in events if e.get("event") == "recover"] == [1, 2]


@pytest.mark.parametrize("overrides, message", [
    (["recovery.method=sft", "recovery.teacher_data={}"], "recovery.teacher_data needs recovery.prompts"),
    (["recovery.method=cpt", "recovery.prompts={sources: [arith]}", "recovery.teacher_data={}"], "use method sft"),
    (["recovery.method=distill", "recovery.prompts={sources: [arith]}", "recovery.teacher_data={}"], "format: prompt_completion"),
    (["recovery.method=sft", "recovery.prompts={sources: [arith]}"], "recovery.prompts is read by"),
    (["recovery.method=cpt", "recovery.teacher_correction={}"], "learns from no teacher"),
    (["recovery.method=onpolicy", "recovery.config={max_steps: 2}", "recovery.prompts={sources: []}"], "recovery.prompts.sources: no prompt source"),
    (["recovery.method=onpolicy", "recovery.config={max_steps: 2}", "recovery.prompts={sources: [missing.jsonl]}"], "'missing.jsonl' does not exist"),
    (["recovery.method=onpolicy", "recovery.config={max_steps: 2}", "recovery.teacher=previous", "recovery.teacher_correction={}"], "recovery.teacher: dense"),
])
def test_bad_teacher_options_fail_before_anything_runs(tmp_path, overrides, message):
    with pytest.raises(UserError, match=message):
        validate_recipe(_recipe(tmp_path / "run", *overrides), for_run=True)
    assert not (tmp_path / "run").exists()


def test_an_empty_prompt_file_and_a_teacher_without_eos_are_named(tmp_path):
    from prunetune.builtin.tiny import tiny_model
    from prunetune.recovery.teacher_data import PromptsConfig, check_teacher

    empty = tmp_path / "prompts.jsonl"
    empty.write_text("")
    _, tok = tiny_model("llama")
    with pytest.raises(UserError, match="prompts.jsonl' is empty"):
        teaching.prompt_records(PromptsConfig(sources=[str(empty)]), tok, {}, 3)
    tok.eos_token = None
    with pytest.raises(UserError, match="no EOS token"):
        check_teacher(tok, PromptsConfig(sources=["arith"]))
    with pytest.raises(UserError, match="no chat template"):
        check_teacher(tiny_model("llama")[1], PromptsConfig(sources=["arith"], chat=True))
