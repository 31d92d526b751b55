"""bench/common.py: the CLI command, versions, CPU name and memory readings the bench scripts share,
and both ways the scripts import it (as `bench.x` here, as `python bench/x.py` by hand)."""

import importlib
import platform
import subprocess
import sys

import pytest

from bench import common

SCRIPTS = sorted(p.stem for p in (common.ROOT / "bench").glob("*.py") if p.stem != "common")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")


def test_root_is_the_repository_and_its_src_is_importable():
    assert (common.ROOT / "pyproject.toml").is_file() and (common.ROOT / "bench" / "common.py").is_file()
    assert str(common.ROOT / "src") in sys.path


def test_the_cli_prefix_runs_prunetune_with_this_interpreter(tmp_path):
    cmd = common.cli()
    assert cmd == [sys.executable, "-m", "prunetune"]
    res = subprocess.run([*cmd, "ls"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip()


def test_versions_keep_the_asked_order_and_mark_a_missing_package():
    import torch

    v = common.versions("python", "torch", "no-such-package-prunetune-bench")
    assert list(v) == ["python", "torch", "no-such-package-prunetune-bench"]
    assert v["python"] == platform.python_version() and v["torch"] == torch.__version__
    assert v["no-such-package-prunetune-bench"] == "?"


@linux_only
def test_cpu_name_is_the_cpuinfo_model_name():
    lines = [x for x in open("/proc/cpuinfo").read().splitlines() if x.startswith("model name")]
    assert common.cpu_name() == (lines[0].split(":", 1)[1].strip() if lines else None)


@linux_only
def test_memory_readings_and_resetting_the_peak():
    rss, peak = common.status_kib("VmRSS"), common.status_kib("VmHWM")
    assert isinstance(rss, int) and rss > 0 and peak >= rss
    assert common.rss_mib() > 0 and common.peak_rss_mib() >= common.rss_mib()
    with pytest.raises(KeyError):
        common.status_kib("NoSuchField")
    common.reset_peak_rss()
    before = common.rss_mib()
    block = b"\x01" * (64 * 2**20)  # 64 MiB, every page written
    grown = common.peak_rss_mib()
    del block
    assert grown - before > 48  # the peak saw the block
    common.reset_peak_rss()
    assert common.peak_rss_mib() < grown - 32  # and a reset forgets it once it is freed


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_imports_as_part_of_bench_without_running(name):
    mod = importlib.import_module(f"bench.{name}")
    assert callable(mod.main)


def test_every_script_imports_as_run_by_hand_without_running():
    """`python bench/x.py` has bench/ first on sys.path and not the repo root: there it is `import common`."""
    bench = str(common.ROOT / "bench")
    code = (
        "import runpy, sys\n"
        f"sys.path = [{bench!r}] + [p for p in sys.path if p not in ('', {str(common.ROOT)!r})]\n"
        f"for name in {SCRIPTS!r}:\n"
        f"    ns = runpy.run_path({bench!r} + '/' + name + '.py', run_name='bench_' + name)\n"
        "    assert callable(ns['main']), name\n"
        "print(sorted(m for m in sys.modules if m in ('common', 'bench', 'bench.common')))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "['common']"
