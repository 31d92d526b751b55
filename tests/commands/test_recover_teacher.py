"""`prunetune recover` with the teacher's own outputs: --teacher-solutions (cached beside --out), --method
onpolicy on --prompts, and their bad input (one line, exit 2, nothing written)."""

import json

import pytest

from tests.conftest import run_cli


def test_teacher_solutions_train_and_their_cache_is_reused(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["recover", "tiny-random-llama", "--method", "sft", "--teacher", "tiny-random-llama", "--prompts", "arith",
            "--teacher-solutions", "--count", "4", "--max-new-tokens", "4", "--quiet", "max_steps=2", "max_length=512"]
    assert run_cli(*args, "--out", out) == 0
    cache = tmp_path / "out.teacher_data.jsonl"
    rows = cache.read_text().splitlines()
    assert len(rows) == 5 and json.loads(rows[1])["source"] == "arith"
    assert json.loads((out / "recovery.json").read_text())["teacher_solutions"] is True
    assert run_cli(*args, "--out", tmp_path / "again", "--cache", cache) == 0
    assert cache.read_text().splitlines() == rows  # nothing regenerated


@pytest.mark.parametrize("extra, message", [
    (["--method", "sft", "--teacher-solutions"], "--teacher-solutions needs --prompts"),
    (["--method", "sft", "--prompts", "arith", "--teacher-solutions"], "needs --teacher"),
    (["--method", "cpt", "--teacher", "tiny-random-llama", "--prompts", "arith", "--teacher-solutions"], "--method sft"),
    (["--method", "onpolicy", "--teacher", "tiny-random-llama", "--prompts", "nowhere.jsonl"], "'nowhere.jsonl' does not exist"),
    (["--method", "sft", "--data", "arith", "--rejection"], "go with --teacher-solutions"),
])
def test_bad_teacher_flags_are_one_line_and_write_nothing(tmp_path, capsys, extra, message):
    assert run_cli("recover", "tiny-random-llama", "--out", tmp_path / "out", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
