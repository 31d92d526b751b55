"""The teacher's cached solutions: generated once, reused on resume and after a SIGKILL, rejection keeps
only correct ones, a corrupt or mismatched cache is one error naming the file."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from prunetune.errors import UserError
from prunetune.recovery.teacher_data import GenerationCache, Prompt, TeacherDataConfig, collect

META = {"teacher": "t", "max_new_tokens": 8}


def stream(n_max: int = 1000, answer=lambda i: str(i * 3)):
    """n -> the first n prompts 'what is i*3', scored right when the completion is the product."""
    def first(n):
        return [Prompt(f"p{i}", f"what is {i}*3?", "task", score=lambda c, i=i: float(c == answer(i)))
                for i in range(min(n, n_max))]
    return first


class Teacher:
    """Answers prompt i with i*3 when `right(i)`, else with a wrong number; counts what it was asked."""

    def __init__(self, right=lambda i: True):
        self.right, self.asked = right, []

    def __call__(self, batch):
        self.asked += [p.id for p in batch]
        return [str(int(p.id[1:]) * 3 + (0 if self.right(int(p.id[1:])) else 1)) for p in batch]


def test_generated_once_then_reused_and_only_the_missing_ones_asked(tmp_path):
    cfg, path = TeacherDataConfig(batch_size=4), tmp_path / "gen.jsonl"
    teacher = Teacher()
    first = collect(stream(), teacher, cfg, GenerationCache(path, META), 10, progress=False)
    assert len(teacher.asked) == 10 and len(first) == 10
    assert first[2] == {"prompt": "what is 2*3?", "completion": "6"}
    again = Teacher()
    assert collect(stream(), again, cfg, GenerationCache(path, META), 10, progress=False) == first
    assert again.asked == []  # resumed: nothing regenerated
    more = Teacher()
    out = collect(stream(), more, cfg, GenerationCache(path, META), 14, progress=False)
    assert more.asked == ["p10", "p11", "p12", "p13"] and out[:10] == first


def test_rejection_keeps_only_correct_solutions_and_draws_more_prompts(tmp_path):
    cfg = TeacherDataConfig(batch_size=4, rejection=True, max_draw_factor=4.0)
    teacher = Teacher(right=lambda i: i % 3 == 0)  # a third of the solutions are right
    cache = GenerationCache(tmp_path / "gen.jsonl", META)
    out = collect(stream(), teacher, cfg, cache, 6, progress=False)
    assert len(out) == 6
    assert all(int(r["completion"]) == 3 * int(r["prompt"].split()[2].split("*")[0]) for r in out)
    assert len(teacher.asked) >= 16  # 6 right ones need at least 16 prompts drawn
    # every generation is cached, rejected ones too (a resume asks for none of them again)
    assert len(cache.rows) == len(teacher.asked) and sum(r["score"] == 0.0 for r in cache.rows.values()) >= 10


def test_rejection_stops_at_the_draw_limit_and_fails_when_nothing_is_right(tmp_path):
    cfg = TeacherDataConfig(batch_size=4, rejection=True, max_draw_factor=2.0)
    teacher = Teacher(right=lambda i: i == 0)
    out = collect(stream(), teacher, cfg, GenerationCache(tmp_path / "a.jsonl", META), 5, progress=False)
    assert out == [{"prompt": "what is 0*3?", "completion": "0"}] and len(teacher.asked) == 10
    with pytest.raises(UserError, match="solved none"):
        collect(stream(), Teacher(right=lambda i: False), cfg, GenerationCache(tmp_path / "b.jsonl", META), 5,
                progress=False)


def test_rejection_needs_scorable_prompts(tmp_path):
    def unscored(n):
        return [Prompt(f"p{i}", "x", "file.jsonl") for i in range(n)]

    with pytest.raises(UserError, match="file.jsonl"):
        collect(unscored, Teacher(), TeacherDataConfig(rejection=True), GenerationCache(tmp_path / "c.jsonl", META), 3,
                progress=False)


@pytest.mark.parametrize("text, what", [
    ("", "empty"),
    ('{"meta": {"teacher": "t", "max_new_tokens": 8}}\n{"id": "p0", "prompt"\n', ":2: not JSON"),
    ('{"id": "p0"}\n', ":1: no meta line"),
    ('{"meta": {"teacher": "t", "max_new_tokens": 8}}\n{"id": "p0", "prompt": "x"}\n', ":2: not a generation record"),
    ('{"meta": {"teacher": "other", "max_new_tokens": 8}}\n', "other settings \\(teacher"),
])
def test_a_corrupt_or_mismatched_cache_is_one_error_naming_the_file(tmp_path, text, what):
    path = tmp_path / "gen.jsonl"
    path.write_text(text)
    with pytest.raises(UserError, match=f"gen.jsonl'?( is | was made with )?{what}") as e:
        GenerationCache(path, META)
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_a_sigkill_mid_generation_leaves_a_whole_cache_and_the_resume_asks_only_for_the_rest(tmp_path):
    path = tmp_path / "gen.jsonl"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from tests.recovery.test_teacher_data import META, Teacher, stream
        from prunetune.recovery.teacher_data import GenerationCache, TeacherDataConfig, collect

        class Dies(Teacher):
            def __call__(self, batch):
                if len(self.asked) >= 8:  # two batches of 4 are written: killed while asking for the third
                    os.kill(os.getpid(), signal.SIGKILL)
                return super().__call__(batch)

        collect(stream(), Dies(), TeacherDataConfig(batch_size=4), GenerationCache({str(path)!r}, META), 12,
                progress=False)
    """)
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                          capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    lines = path.read_text().splitlines()
    assert len(lines) == 9 and [json.loads(x)["id"] for x in lines[1:]] == [f"p{i}" for i in range(8)]
    assert not [p for p in tmp_path.iterdir() if p.name != "gen.jsonl"]  # no temporary file left beside it
    teacher = Teacher()
    out = collect(stream(), teacher, TeacherDataConfig(batch_size=4), GenerationCache(path, META), 12, progress=False)
    assert teacher.asked == ["p8", "p9", "p10", "p11"] and len(out) == 12
