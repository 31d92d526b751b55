"""What every bench script needs besides its benchmark: repo paths, the CLI command, machine facts, memory.

A script run as `python bench/x.py` imports it as `common` (bench/ is then first on sys.path); tests
import the scripts with the repo root on sys.path, where it is `bench.common`. Each script does

    try:
        from bench.common import ROOT, ...
    except ImportError:  # run as `python bench/x.py`
        from common import ROOT, ...

Importing it puts ROOT/src first on sys.path, so a script imports this checkout's prunetune.
Memory readings are Linux-only (/proc/self).
"""

from __future__ import annotations

import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository root
SRC = ROOT / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


def cli() -> list[str]:
    """The command prefix that runs prunetune's CLI with this interpreter: `[*cli(), "eval", ...]`."""
    return [sys.executable, "-m", "prunetune"]


def command_footer(command: str, machine: dict) -> list[str]:
    """The closing lines of a results page: the command that produced it and the machine it ran on."""
    import os

    return ["", "Command:", "", f"    {command}", "",
            f"Python {machine['python']}, torch {machine['torch']}, transformers {machine['transformers']}; "
            f"CPU {machine['cpu']} ({os.cpu_count()} cores, shared).", ""]


def run_worker(script: str, *args: str) -> dict:
    """Run `script --worker ...` in a fresh interpreter (its own peak memory) and return the JSON object
    it prints on its last line of stdout."""
    import json
    import subprocess

    done = subprocess.run([sys.executable, script, "--worker", *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_page(out: str, res: dict, page: str, *, quiet: bool = False) -> None:
    """`out`.json (the numbers) and `out`.md (the page), each written atomically; the page is printed
    unless `quiet`."""
    import json

    from prunetune.io import atomic_write_text

    atomic_write_text(Path(out + ".json"), json.dumps(res, indent=2) + "\n")
    atomic_write_text(Path(out + ".md"), page)
    if not quiet:
        print(page)


def torch_machine() -> dict:
    """The machine facts every torch benchmark page names: python, torch, transformers, CPU."""
    return {**versions("python", "torch", "transformers"), "cpu": cpu_name()}


def versions(*names: str) -> dict[str, str]:
    """{name: installed version} in the given order; "python" is the interpreter, "?" a missing package."""
    out = {}
    for name in names:
        if name == "python":
            out[name] = platform.python_version()
            continue
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "?"
    return out


def cpu_name() -> str | None:
    """The CPU's model name from /proc/cpuinfo; None where it has none (not Linux, many ARM machines)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def status_kib(field: str) -> int:
    """A field of /proc/self/status in KiB, e.g. VmRSS (resident now) or VmHWM (peak resident)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def rss_mib() -> float:
    """This process's resident memory now, in MiB (VmRSS)."""
    return status_kib("VmRSS") / 1024


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB (VmHWM): since it started or the last reset_peak_rss()."""
    return status_kib("VmHWM") / 1024


def reset_peak_rss() -> None:
    """Reset the peak (VmHWM) to the current resident memory, so that peak_rss_mib() covers what follows."""
    Path("/proc/self/clear_refs").write_text("5")
