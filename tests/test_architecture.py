"""The package's shape, as tests: the layers contract holds, names are unique, modules and the loop stay small."""

import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import prunetune

ROOT = Path(prunetune.__file__).parent


@pytest.mark.slow
def test_the_layers_contract_holds():
    """commands > loop > builtin > pruning | recovery | tasks > data > checkpoint > models > infrastructure."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    project = Path(__file__).resolve().parents[1]
    done = subprocess.run([exe], cwd=project, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "0 broken" in done.stdout, done.stdout[-3000:]


def test_nothing_below_builtin_names_the_builtin_world():
    """The storage, data, pruning, recovery and task layers know built-in names only through registries."""
    root = ROOT
    offenders = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if rel.parts[0] in ("builtin", "loop", "commands") or rel.name in ("cli.py", "registry.py"):
            continue
        text = path.read_text()
        for word in ('"reference"', '"arith"', "tiny-random-", "prunetune.builtin"):
            if word in text:
                offenders.append(f"{rel}: {word}")
    assert not offenders, offenders


def test_no_two_modules_share_a_name():
    """Command handlers are named after their command; every other module name is unique."""
    from collections import Counter
    root = ROOT
    names = Counter(p.stem for p in root.rglob("*.py") if p.stem != "__init__" and p.parent.name != "commands")
    assert [n for n, c in names.items() if c > 1] == []


def test_modules_stay_small_and_the_loop_fits_on_a_screen():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in ROOT.rglob("*.py")}
    assert {k: v for k, v in sizes.items() if v > 400} == {}
    from prunetune.loop.loop import Loop

    assert len(inspect.getsource(Loop.run).splitlines()) <= 60
