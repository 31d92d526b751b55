"""The vllm backend without vLLM: a one-line error naming what to install, before any weight loads."""

import pytest

from tests.conftest import run_cli


@pytest.fixture
def no_vllm(monkeypatch):
    import importlib.util

    monkeypatch.delenv("PRUNETUNE_VLLM_PYTHON", raising=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))


def test_recipe_backend_vllm_without_vllm_is_one_line(no_vllm, capsys, tmp_path):
    assert run_cli("validate", "smoke", "evaluation.backend=vllm") == 0  # validates anywhere; the run needs vLLM
    capsys.readouterr()
    assert run_cli("run", "smoke", "evaluation.backend=vllm", f"output_dir={tmp_path / 'run'}") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "evaluation.backend" in err[0] and "prunetune[vllm]" in err[0], err
    assert not (tmp_path / "run").exists()


def test_recipe_grpo_vllm_rollouts_without_vllm_stop_the_run_not_validation(no_vllm, capsys, tmp_path):
    over = ["recovery.method=grpo", "recovery.config={use_vllm: true}", f"output_dir={tmp_path / 'run'}"]
    assert run_cli("validate", "smoke", *over) == 0
    capsys.readouterr()
    assert run_cli("run", "smoke", *over) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "recovery.config.use_vllm" in err[0], err
    assert not (tmp_path / "run").exists()


def test_eval_backend_vllm_without_vllm_is_one_line(no_vllm, capsys, tmp_path):
    assert run_cli("eval", "reference", "--tasks", "arith", "--backend", "vllm") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "prunetune[vllm]" in err[0] and "PRUNETUNE_VLLM_PYTHON" in err[0], err


def test_a_named_vllm_python_must_exist(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("PRUNETUNE_VLLM_PYTHON", str(tmp_path / "nope"))
    assert run_cli("eval", "reference", "--tasks", "arith", "--backend", "vllm") == 2
    assert "PRUNETUNE_VLLM_PYTHON" in capsys.readouterr().err


@pytest.mark.parametrize("program, message", [
    ("python-without-vllm", "is a Python without vLLM"),
    ("silent", "is not a Python"),
])
def test_a_named_vllm_python_that_cannot_run_vllm_is_one_line_naming_the_fix(monkeypatch, capsys, tmp_path,
                                                                             program, message):
    import sys

    if program == "silent":
        path = tmp_path / "silent"
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
    else:  # this test's own Python, told that vllm is not importable
        path = tmp_path / "python"
        path.write_text(f"#!/bin/sh\nexec {sys.executable} -c \"print('prunetune-vllm', False)\"\n")
        path.chmod(0o755)
    monkeypatch.setenv("PRUNETUNE_VLLM_PYTHON", str(path))
    assert run_cli("eval", "reference", "--tasks", "arith", "--backend", "vllm") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "PRUNETUNE_VLLM_PYTHON" in err[0], err
