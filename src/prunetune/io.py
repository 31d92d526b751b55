"""Atomic file and directory writes: a killed process never leaves a half-written result in place."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from prunetune.errors import UserError

NAME_MAX = 255
"""Longest file name (bytes) most Linux file systems take; longer ones fail only when written."""


def check_output_path(path: str | os.PathLike, flag: str, *, may_exist: bool = False, kind: str = "any") -> Path:
    """Fail now, naming `flag`, if `path` could not be written later: an existing target (unless
    `may_exist`; then one of the wrong `kind`, "dir" or "file"), a dangling symbolic link, a name too long,
    a parent that is a file, or a place this process may not write (tried: a probe file is made there and
    removed, so a read-only or pseudo file system such as /proc is found before the work, not after)."""
    p = Path(path)
    if p.is_symlink() and not p.exists():
        raise UserError(f"{flag} '{path}' is a symbolic link to nothing ({os.readlink(p)}); remove it or give another path")
    if p.exists() and not may_exist:
        raise UserError(f"{flag} '{path}' already exists")
    if p.exists() and kind == "dir" and not p.is_dir():
        raise UserError(f"{flag} '{path}' is a file, not a directory")
    if p.exists() and kind == "file" and p.is_dir():
        raise UserError(f"{flag} '{path}' is a directory, not a file")
    for part in p.parts:
        if len(part.encode()) > NAME_MAX - 40:  # room for the .NAME.tmp-PID-XXXXXXXX staging name
            raise UserError(f"{flag}: a name in '{str(path)[:60]}...' is too long ({len(part.encode())} bytes)")
    parent = p if p.exists() and kind != "file" else p.parent  # an existing output_dir is written into
    while not parent.exists() and not parent.is_symlink():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{flag} '{path}': '{parent}' is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag} '{path}': cannot write in '{parent}' (permission denied)")
    probe = parent / f".prunetune-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as e:
        raise UserError(f"{flag} '{path}': cannot write in '{parent}' ({e.strerror})") from None
    return p


def staging_path(final: str | os.PathLike, tag: str = "tmp") -> Path:
    """A hidden sibling of `final` to write into first: `.NAME.tmp-PID-XXXXXXXX` (the pid tells a later
    run whether its writer is gone, see `clean_stale_temps`)."""
    final = Path(final)
    return final.parent / f".{final.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENAMETOOLONG, errno.ENOTDIR,
                errno.EISDIR, errno.EEXIST, errno.EIO, errno.EFBIG, errno.ENOENT, errno.ELOOP, errno.EMLINK, errno.EXDEV}
"""OS errors at write time that are the machine's state, not a bug: reported as one line naming the path."""


def crash_point(name: str) -> None:
    """Fault injection for the kill tests: PRUNETUNE_CRASH_AT=NAME kills the process there (SIGKILL)."""
    if os.environ.get("PRUNETUNE_CRASH_AT") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def write_error(e: OSError, path) -> Exception:
    """An OSError at write time as the one-line error (a UserError naming the path), or `e` itself when it
    is no state of the machine (a bug to see in full)."""
    if e.errno in WRITE_ERRNOS:
        return UserError(f"cannot write '{path}': {e.strerror} (nothing was kept)")
    return e


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, *, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success rename it to `final` in one step.

    On an exception the temporary directory is removed and `final` is untouched. With `replace`,
    an existing `final` is swapped out (old copy renamed aside first, then deleted).
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(final.parent, final.name)
        tmp = staging_path(final)
        tmp.mkdir()
    except OSError as e:
        if e.errno in WRITE_ERRNOS:
            raise UserError(f"cannot write '{final}': {e.strerror} (nothing was kept)") from None
        raise
    try:
        yield tmp
        crash_point(f"atomic:{final.name}")
        _fsync_dir(tmp)
        if final.exists():
            if not replace:  # another process wrote it while this one staged: never clobber it
                raise UserError(f"'{final}' already exists (written meanwhile by another process); nothing was kept")
            trash = staging_path(final, "old")
            os.rename(final, trash)
            os.rename(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            try:
                os.rename(tmp, final)
            except OSError as e:
                if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    raise UserError(f"'{final}' already exists (written meanwhile by another process); nothing was kept") from None
                raise
        _fsync_dir(final.parent)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno in WRITE_ERRNOS:  # the machine's state, named by the path the user gave
            raise UserError(f"cannot write '{final}': {e.strerror} (nothing was kept)") from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _writer_gone(name: str) -> bool:
    """Whether the process that made staging entry `name` (`.X.tmp-PID-HEX`) is gone; names without a pid
    (written before pids were added) count as gone."""
    pid = name.rsplit("-", 2)[-2] if name.count("-") >= 2 else ""
    if not pid.isdigit():
        return True
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def clean_stale_temps(parent: str | os.PathLike, name: str | None = None) -> None:
    """Remove staging siblings a killed `atomic_dir` / `atomic_write_text` / command left behind (only of
    `name` when given, and only those whose writer is gone: a live writer's staging stays)."""
    parent = Path(parent)
    if not parent.is_dir():
        return
    prefix = f".{name}." if name else "."
    for p in parent.iterdir():
        if not p.name.startswith(prefix):
            continue
        if p.name == ".final.tmp" or ((".tmp-" in p.name or ".old-" in p.name) and _writer_gone(p.name)):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to a temporary file beside `path`, fsync it, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_path(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line and fsync. A line torn by a kill is skipped by `read_jsonl`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


COUNT, NUMBER = _count, _number
"""Field checks for `read_json`: a non-negative integer, any number (besides types: dict, list, str, ...)."""


def shape_problem(obj, fields: dict) -> str | None:
    """Why `obj` is not a mapping holding each of `fields` (name -> type, tuple of types, or predicate), or None."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    for name, want in fields.items():
        if name not in obj:
            return f"'{name}' is missing"
        v = obj[name]
        ok = want(v) if callable(want) and not isinstance(want, type) else (
            isinstance(v, want) and not (isinstance(v, bool) and want is int))
        if not ok:
            return f"'{name}' has the wrong type ({type(v).__name__})"
    return None


def read_json(path: str | os.PathLike, *, fix: str, fields: dict | None = None, kind: type = dict):
    """A JSON file read as untrusted input (one prunetune wrote, then edited or corrupted, or a user's):
    unreadable, not JSON, not a `kind`, or lacking one of `fields` is a UserError naming the file and `fix`
    (what to do about it)."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"'{path}' is not UTF-8 text (the file was edited or corrupted); {fix}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"'{path}' is not valid JSON (line {e.lineno}; the file was edited or corrupted); {fix}") from None
    except RecursionError:
        raise UserError(f"'{path}' is nested too deeply; {fix}") from None
    except OSError as e:
        raise UserError(f"cannot read '{path}': {e.strerror}; {fix}") from None
    problem = (f"expected a JSON {'list' if kind is list else 'object'}, got {type(obj).__name__}"
               if not isinstance(obj, kind) else shape_problem(obj, fields) if fields else None)
    if problem:
        raise UserError(f"'{path}': {problem}; {fix}")
    return obj


def read_jsonl(path: str | os.PathLike, *, fields: dict | None = None, fix: str = "") -> list[dict]:
    """Read a JSONL log written by `append_jsonl`; a torn final line (a kill mid-write) is skipped and
    logged, a malformed line elsewhere is a UserError naming the file and line."""
    out = []
    path = Path(path)
    if not path.exists():
        return out
    fix = f"; {fix}" if fix else ""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise UserError(f"cannot read '{path}': {e.strerror}{fix}") from None
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            if i != len(lines) - 1:
                raise UserError(f"{path}:{i + 1}: not a JSON line (the file was edited or corrupted){fix}") from None
            logging.getLogger("prunetune").warning("%s: skipped a torn last line (a run killed mid-write)", path)
            continue
        problem = shape_problem(rec, fields or {})
        if problem:
            raise UserError(f"{path}:{i + 1}: {problem}{fix}")
        out.append(rec)
    return out
