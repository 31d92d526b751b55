"""Atomic writes never clobber what another process wrote; the JSONL reader survives a kill mid-write."""

import pytest

from prunetune.errors import UserError
from prunetune.io import atomic_dir, check_output_path, read_jsonl


def test_a_target_written_meanwhile_by_another_process_is_never_clobbered(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UserError, match="written meanwhile by another process"):
        with atomic_dir(out) as tmp:
            (tmp / "mine.txt").write_text("this run")
            out.mkdir()  # another `prunetune prune --out out` finished first
            (out / "theirs.txt").write_text("the other run")
    assert [p.name for p in out.iterdir()] == ["theirs.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the staging directory is gone


def test_read_jsonl_skips_a_torn_last_line_and_names_a_corrupt_one(tmp_path):
    f = tmp_path / "m.jsonl"
    f.write_text('{"a": 1}\n{"a": 2}\n{"a": ')
    assert read_jsonl(f) == [{"a": 1}, {"a": 2}]
    f.write_text('{"a": 1}\nnot json\n{"a": 3}\n')
    with pytest.raises(UserError, match=r"m.jsonl:2: not a JSON line"):
        read_jsonl(f)


def test_output_paths_are_checked_before_anything_runs(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is not a directory"):
        check_output_path(tmp_path / "file" / "out", "--out")
    with pytest.raises(UserError, match="too long"):
        check_output_path(tmp_path / ("n" * 250), "--out")
    with pytest.raises(UserError, match="already exists"):
        check_output_path(tmp_path / "file", "--out")
    (tmp_path / "run").mkdir()
    assert check_output_path(tmp_path / "run", "output_dir", may_exist=True) == tmp_path / "run"
    with pytest.raises(UserError, match="is not a directory"):  # an output_dir must be one
        check_output_path(tmp_path / "file", "output_dir", may_exist=True)
    assert check_output_path(tmp_path / "a" / "b" / "c", "--out") == tmp_path / "a" / "b" / "c"


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_staging_of_a_dead_writer_goes_on_the_next_write_a_live_ones_stays(tmp_path):
    import os

    dead, live = tmp_path / f".o.tmp-{_dead_pid()}-0123abcd", tmp_path / f".o.tmp-{os.getppid()}-0123abcd"
    other = tmp_path / f".p.tmp-{_dead_pid()}-0123abcd"  # another output's staging: not this write's business
    for d in (dead, live, other):
        d.mkdir()
    with atomic_dir(tmp_path / "o") as tmp:
        (tmp / "x").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["o", live.name, other.name])


def test_an_output_under_a_pseudo_file_system_or_a_dangling_link_is_refused_before_the_work(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UserError, match="symbolic link to nothing"):
        check_output_path(tmp_path / "link", "--out")
    with pytest.raises(UserError, match="cannot write in '/proc'"):
        check_output_path("/proc/x", "--out")
    (tmp_path / "d").mkdir()
    with pytest.raises(UserError, match="is a directory, not a file"):
        check_output_path(tmp_path / "d", "report", may_exist=True, kind="file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "link"]  # the probe left nothing
