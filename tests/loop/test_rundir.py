"""The run directory's promises: one run per directory, resume drops exactly what will run again, a moved
run resumes, divergence stops the loop with the last good model kept, and the exit code says so."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from prunetune.errors import UserError
from prunetune.io import read_jsonl
from prunetune.loop import load_recipe, run
from prunetune.loop.rundir import RunDir
from tests.conftest import run_cli

FAST = ["evaluation.limit=4", "evaluation.max_new_tokens=8", "recovery.config.max_steps=2",
        "prune.calibration_samples=4", "recovery.chunk_size=16", "schedule.kv_groups={}"]


def _text():
    from prunetune.loop.recipe import dump_recipe

    return dump_recipe(load_recipe("smoke"))


def test_a_second_claim_on_a_directory_is_refused_naming_the_holder(tmp_path):
    with RunDir(tmp_path / "run", _text()).claimed():
        with pytest.raises(UserError, match=rf"in use by another prunetune run \(pid {os.getpid()} on "):
            RunDir(tmp_path / "run", _text()).prepare()
    with RunDir(tmp_path / "run", _text()).claimed():  # released when the block ended
        pass


def test_a_killed_holder_leaves_no_lock_behind(tmp_path):
    out = tmp_path / "run"
    code = (
        "import sys, time; from prunetune.loop.rundir import RunDir; "
        f"RunDir({str(out)!r}, sys.stdin.read()).prepare(); print('held', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        proc.stdin.write(_text())
        proc.stdin.close()
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match="in use"):
            RunDir(out, _text()).prepare()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with RunDir(out, _text()).claimed():  # the kernel dropped the dead holder's lock
        pass


def test_run_on_a_directory_in_use_fails_at_once(tmp_path, capsys):
    out = tmp_path / "run"
    recipe = load_recipe("smoke", [f"output_dir={out}", *FAST])
    from prunetune.loop.recipe import dump_recipe

    with RunDir(out, dump_recipe(recipe)).claimed():
        assert run_cli("run", "smoke", f"output_dir={out}", *FAST) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "in use by another prunetune run" in err[0]
    assert not (out / "baseline").exists()


def test_resume_keeps_only_what_is_on_disk_and_drops_a_torn_line(tmp_path):
    out = tmp_path / "run"
    recipe = load_recipe("smoke", [f"output_dir={out}", *FAST, "iterations=1"])
    run(recipe, progress=False)
    lines = (out / "metrics.jsonl").read_text()
    # what a kill during a second attempt leaves: lines of an iteration that will run again, a torn line
    extra = json.dumps({"event": "prune", "iteration": 2}) + "\n" + '{"event": "rec'
    (out / "metrics.jsonl").write_text(lines + extra)
    RunDir(out, (out / "recipe.yaml").read_text()).prepare()
    assert (out / "metrics.jsonl").read_text() == lines
    assert run_cli("report", out) == 0


def test_a_half_started_run_resumes_from_scratch_without_duplicate_lines(tmp_path):
    out = tmp_path / "run"
    recipe = load_recipe("smoke", [f"output_dir={out}", *FAST, "iterations=1"])
    out.mkdir()
    (out / "metrics.jsonl").write_text(json.dumps({"event": "baseline", "iteration": 0}) + "\n")
    (out / "recipe.yaml").write_text(__import__("prunetune.loop.recipe", fromlist=["x"]).dump_recipe(recipe))
    run(recipe, progress=False)  # the baseline was never saved: its stale line must not stay
    assert [m["event"] for m in read_jsonl(out / "metrics.jsonl")].count("baseline") == 1


def test_a_moved_run_directory_resumes(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli("run", "smoke", f"output_dir={a}", *FAST, "iterations=1") == 0
    shutil.move(a, b)
    assert run_cli("run", "smoke", f"output_dir={b}", *FAST, "iterations=1") == 0, capsys.readouterr().err
    assert "differs" not in capsys.readouterr().err


def test_divergence_stops_the_loop_keeping_the_last_accepted_model_and_exits_1(tmp_path, capsys):
    out = tmp_path / "run"
    rc = run_cli("run", "smoke", f"output_dir={out}", *FAST, "recovery.config.learning_rate=1e6",
                 "recovery.config.max_steps=6")
    err = capsys.readouterr().err
    assert rc == 1 and "recovery diverged in iteration 1" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completed_iterations"] == 0 and "training diverged" in summary["stopped_reason"]
    assert not list(out.glob("iteration_*"))
    assert any(m["event"] == "diverged" for m in read_jsonl(out / "metrics.jsonl"))


def test_recover_refuses_to_save_a_diverged_model(tmp_path, capsys):
    model = tmp_path / "m"
    from prunetune.builtin.tiny import tiny_model

    m, tok = tiny_model("llama")
    m.save_pretrained(model)
    tok.save_pretrained(model)
    capsys.readouterr()
    rc = run_cli("recover", model, "--out", tmp_path / "o", "--method", "cpt", "--data", "arith",
                 "--chunk", "0", "--chunk-size", "64", "max_steps=6", "learning_rate=1e6", "max_length=32", "--quiet")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "training diverged" in err[0], err
    assert not (tmp_path / "o").exists()


def test_a_full_disk_is_one_line_and_leaves_no_partial_output(tmp_path, capsys, monkeypatch):
    import errno

    import prunetune.checkpoint as ckpt
    from prunetune.builtin.tiny import tiny_model

    m, tok = tiny_model("llama")
    m.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")

    def full(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(ckpt, "atomic_write_json", full)
    capsys.readouterr()
    rc = run_cli("prune", tmp_path / "m", "--out", tmp_path / "o", "--mlp-fraction", "0.25",
                 "--calibration-samples", "4")
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]  # progress bars aside
    assert rc == 2 and len(errors) == 1, errors
    assert f"cannot write '{tmp_path / 'o'}': No space left on device" in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no output, no staging directory


def test_auto_map_of_an_input_is_not_copied_into_outputs(tmp_path):
    from prunetune.builtin.tiny import tiny_model

    m, tok = tiny_model("llama")
    m.config.auto_map = {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}
    m.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    assert run_cli("prune", tmp_path / "m", "--out", tmp_path / "o", "--mlp-fraction", "0.25",
                   "--calibration-samples", "4") == 0
    assert "auto_map" not in json.loads((Path(tmp_path) / "o" / "config.json").read_text())


def _fake_run(out: Path) -> None:
    """What a run killed after its first iteration leaves, as far as --restart can tell."""
    (out / "iteration_01" / "state").mkdir(parents=True)
    (out / "baseline").mkdir()
    (out / "recipe.yaml").write_text(_text())
    (out / "metrics.jsonl").write_text('{"event": "baseline", "iteration": 0}\n')
    (out / ".iteration_02.tmp-0123abcd").mkdir()


def test_restart_refuses_a_directory_that_was_never_a_run_and_does_not_suggest_it(tmp_path, capsys):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "thesis.tex").write_text("two years of work")
    (out / "recipe.yaml").write_text("model: mine\n")  # a user's own recipe beside it is no run either
    for restart in ([], ["--restart"]):
        assert run_cli("run", "smoke", f"output_dir={out}", *FAST, *restart) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "holds no prunetune run" in err[0] and "--restart" not in err[0], err
    assert sorted(p.name for p in out.iterdir()) == ["recipe.yaml", "thesis.tex"]
    assert (out / "thesis.tex").read_text() == "two years of work"


def test_restart_removes_what_the_run_wrote_and_nothing_else(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    _fake_run(out)
    (out / "notes.txt").write_text("mine")
    (out / "plots").mkdir()
    rd = RunDir(out, _text(), restart=True)
    with rd.claimed():
        pass
    assert sorted(p.name for p in out.iterdir()) == [".lock", "log.txt", "notes.txt", "plots", "recipe.yaml"]
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_a_kill_during_the_family_export_is_finished_on_resume(tmp_path):
    from tests.loop.test_loop import _cli

    out = tmp_path / "run"
    keeps = ["iterations=1", "schedule.kv_groups={}", "export.keeps=[0.9]"]
    killed = _cli(out, *keeps, crash="family:keep_0.90")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (out / "iteration_01" / "state" / "loop_state.json").is_file()
    assert not (out / "family" / "keep_0.90").exists()
    done = _cli(out, *keeps)
    assert done.returncode == 0, done.stderr[-2000:]
    member = out / "family" / "keep_0.90"
    assert sorted(p.name for p in (out / "family").iterdir()) == ["keep_0.90"]  # no staging debris
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(member)
    assert json.loads((member / "state" / "eval.json").read_text())["keep"] == 0.9
    assert [m["keep"] for m in json.loads((out / "summary.json").read_text())["family"]] == [0.9]


def test_a_full_disk_during_a_run_is_one_line_and_the_run_resumes(tmp_path, capsys, monkeypatch):
    import errno

    import prunetune.loop.rundir as rundir

    out, real = tmp_path / "run", rundir.save_checkpoint

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(args[2]))

    monkeypatch.setattr(rundir, "save_checkpoint", full)
    assert run_cli("run", "smoke", f"output_dir={out}", *FAST, "iterations=1", "--no-progress") == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"cannot write '{out / 'iteration_01'}': No space left on device" in errors[0]
    assert (out / "baseline" / "eval.json").is_file()  # earlier results untouched
    assert not [p.name for p in out.iterdir() if p.name.startswith("iteration_") or ".tmp-" in p.name]
    monkeypatch.setattr(rundir, "save_checkpoint", real)
    assert run_cli("run", "smoke", f"output_dir={out}", *FAST, "iterations=1", "--no-progress") == 0
    assert (out / "iteration_01" / "model.safetensors").is_file()


def test_recover_works_beside_its_output_not_in_the_system_temp_dir(tmp_path, monkeypatch, capsys):
    import prunetune.recovery as recovery

    seen = []

    def fake(model, tok, method, records, overrides, *, work_dir, **kw):
        seen.append(Path(work_dir))
        assert Path(work_dir).is_dir()
        raise UserError("stop here")

    monkeypatch.setattr(recovery, "recover", fake)
    assert run_cli("recover", "tiny-random-llama", "--out", tmp_path / "o", "--method", "cpt", "--data", "arith") == 2
    assert seen and seen[0].parent == tmp_path and seen[0].name.startswith(".o.tmp-")
    assert list(tmp_path.iterdir()) == []  # removed when the command ended


@pytest.mark.slow
def test_a_kill_during_a_prune_save_leaves_debris_the_next_prune_removes(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PRUNETUNE_CRASH_AT="atomic:o")
    cmd = [sys.executable, "-m", "prunetune", "prune", "tiny-random-llama", "--out", str(tmp_path / "o"),
           "--mlp-fraction", "0.25", "--calibration-samples", "4"]
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert [p.name[:7] for p in tmp_path.iterdir()] == [".o.tmp-"] and not (tmp_path / "o").exists()
    env.pop("PRUNETUNE_CRASH_AT")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [p.name for p in tmp_path.iterdir()] == ["o"]
