"""Each hostile program is stopped and reported failed; the test process survives and nothing leaks."""

import os
import time

import pytest

from prunetune.tasks.sandbox import _pids_of_uid, _sandbox_python, run_many, run_program

HOSTILE = {
    "infinite_loop": ("while True:\n    pass\n", "timeout"),
    "fork_loop": (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        "timeout",
    ),
    "huge_allocation": ("x = bytearray(16 << 30)\nprint('allocated')\n", "failed"),
    "socket": (
        "import socket\ns = socket.create_connection(('1.1.1.1', 80), timeout=3)\nprint('connected')\n",
        "failed",
    ),
    "print_gigabytes": ("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", "output_limit"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_program_is_stopped(name):
    code, status = HOSTILE[name]
    start = time.monotonic()
    r = run_program(code, timeout=2.0, max_output_bytes=1 << 20)
    assert not r.passed
    assert r.status == status, r.output[-500:]
    assert time.monotonic() - start < 20
    assert "allocated" not in r.output and "connected" not in r.output
    assert len(r.output) <= 1 << 20


def test_fork_loop_leaves_no_process_behind():
    _, switch_uid = _sandbox_python()
    r = run_program(HOSTILE["fork_loop"][0] + "", timeout=1.5)
    assert r.status == "timeout"
    if switch_uid:  # every process of the private uids is gone
        from prunetune.tasks.sandbox import _UID_BASE

        leftover = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if line.startswith(("State:", "Uid:")))
            except OSError:
                continue
            uid = int(fields["Uid"].split()[0])
            if _UID_BASE <= uid < _UID_BASE + 1000 and not fields["State"].strip().startswith("Z"):
                leftover.append(pid)
        assert leftover == []  # zombies awaiting their reaper are not counted: they cannot run


def test_writing_outside_workdir_fails(tmp_path):
    target = tmp_path / "escaped.txt"
    r = run_program(f"open({str(target)!r}, 'w').write('x')\n", timeout=5)
    if os.geteuid() != 0:
        pytest.skip("without root there is no separate uid; see the sandbox docstring")
    assert not r.passed and r.status == "failed"
    assert not target.exists()
    ok = run_program("open('inside.txt', 'w').write('x')\nprint(open('inside.txt').read())\n", timeout=5)
    assert ok.passed and ok.output.strip() == "x"


def test_large_file_is_capped():
    r = run_program("open('big', 'wb').write(b'x' * (64 << 20))\n", timeout=5, max_file_bytes=1 << 20)
    assert r.status == "failed" and "File too large" in r.output


def test_ok_and_error_programs():
    good, bad = run_many(["print(1 + 1)\n", "raise SystemExit(3)\n"], workers=2)
    assert good.passed and good.output.strip() == "2"
    assert not bad.passed and bad.returncode == 3
    assert _pids_of_uid(os.getuid())  # the test process itself is alive and listed


def test_all_canonical_humaneval_solutions_pass_and_wrong_ones_fail():
    from prunetune.tasks import get_task

    task = get_task("humaneval", workers=2)
    examples = task.examples()
    assert len(examples) == 164
    start = time.monotonic()
    scores = task.score_many(examples, [e.meta["solution"] for e in examples])
    assert sum(scores) == 164, [e.id for e, s in zip(examples, scores) if s < 1]
    assert time.monotonic() - start < 90
    wrong = task.score_many(examples[:3], ["    return None\n"] * 3)
    assert wrong == [0.0, 0.0, 0.0]
