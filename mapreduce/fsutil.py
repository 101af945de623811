"""Files that are never half written: write a temporary file beside the target, then rename.

``os.replace`` within one folder is atomic on POSIX, so a reader sees the old file or the new one,
and a crash leaves at most a ``.tmp-`` file, which :func:`remove_stale_temps` clears.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import BinaryIO, Iterator, Sequence

TEMP_MARK = ".tmp-"
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def set_umask(mask: int) -> None:
    """Set the process's umask, and the mode of the files written here with it."""
    global _UMASK
    os.umask(mask)
    _UMASK = mask


@contextlib.contextmanager
def atomic_writer(path: str) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; on success it is flushed, synced and renamed."""
    with atomic_writers([path]) as (f,):
        yield f


@contextlib.contextmanager
def atomic_writers(paths: Sequence[str]) -> Iterator[list[BinaryIO]]:
    """Replace several files together: every one is written and synced before the first is
    renamed, so a failure while writing any of them (a full disk) leaves all as they were, never
    a new file beside an old one. Only a crash during the renames themselves can split the set.

    An ``OSError`` that names no file, or only a temporary one, is raised again naming the
    target, so that its one-line message says where the write failed.
    """
    targets = [os.path.abspath(p) for p in paths]
    temps: list[str] = []
    files: list[BinaryIO] = []
    try:
        for target in targets:
            folder, base = os.path.split(target)
            fd, tmp = tempfile.mkstemp(prefix=temp_prefix(base), dir=folder)
            temps.append(tmp)
            os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode
            files.append(os.fdopen(fd, "wb", buffering=1 << 20))
        yield files
        for f in files:
            f.flush()
            os.fsync(f.fileno())
            f.close()
        for tmp, target in zip(temps, targets):
            os.replace(tmp, target)
    except BaseException as exc:
        for f in files:
            with contextlib.suppress(OSError, ValueError):
                f.close()  # may try to flush what a full disk refused: that fails again
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno and (
                exc.filename is None or TEMP_MARK in os.path.basename(str(exc.filename))):
            where = targets[0] if len(targets) == 1 else os.path.dirname(targets[0])
            raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), where) from exc
        raise


def temp_prefix(base: str) -> str:
    """Prefix of a temporary name for ``base``; it carries our pid so that a cleaner can tell a
    live run's temporary files from a dead one's."""
    return f".{base}{TEMP_MARK}{os.getpid()}-"


def make_temp_dir(folder: str, base: str) -> str:
    return tempfile.mkdtemp(prefix=temp_prefix(base), dir=folder)


def replace_dir(src: str, dst: str) -> None:
    """Put folder ``src`` at ``dst``, replacing what was there. Not atomic for a folder that exists:
    a crash between the two renames leaves ``dst`` missing (never mixed), which callers treat as
    not done yet."""
    import shutil

    if os.path.lexists(dst):
        folder, base = os.path.split(os.path.abspath(dst))
        trash = make_temp_dir(folder, base)
        os.rmdir(trash)
        os.replace(dst, trash)
        os.replace(src, dst)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, dst)


def commit_dir(staging: str, manifest_json: bytes, dst: str, mtime_ns: int | None = None) -> None:
    """Write ``manifest.json`` into the filled folder ``staging`` last, then put it at ``dst``:
    a folder with a manifest is whole (the store's days and blocks are committed so). Given
    ``mtime_ns``, the manifest keeps that modification time (a day stored anew, not reduced
    anew: the daemon takes a newer manifest for a day reduced again)."""
    path = os.path.join(staging, "manifest.json")
    atomic_write_bytes(path, manifest_json)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    replace_dir(staging, dst)


def ensure_writable_folder(path: str, what: str = "output") -> None:
    """Create folder ``path`` if needed and check that files can be made in it; a problem is a
    :class:`UsageError` (a bad command line, exit 2) naming ``what`` the folder is for, found
    before any work rather than as an OSError from deep inside a run."""
    from mapreduce.errors import UsageError

    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{what} {path} exists and is not a folder")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {what} folder {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{what} folder {path} is not writable")


def atomic_write_bytes(path: str, data: bytes) -> None:
    with atomic_writer(path) as f:
        f.write(data)


def remove_stale_temps(folder: str) -> list[str]:
    """Remove temporary files and folders a killed run left in ``folder``; returns their names."""
    import shutil

    removed = []
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return removed
    for name in names:
        path = os.path.join(folder, name)
        if name.startswith(".") and TEMP_MARK in name and not _owner_alive(name, path):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            removed.append(name)
    return removed


#: psutil derives a process's start time from the boot time, which /proc gives in whole seconds
_START_TIME_SLACK = 2.0


def _owner_alive(name: str, path: str) -> bool:
    """Whether the process named in a temporary name may still be writing it. A live pid is not
    enough: pids are reused (soon, in a container; from 1 again after a reboot), and a temporary
    file last written before its pid's process started was not written by that process."""
    import psutil

    pid_text = name.split(TEMP_MARK, 1)[1].split("-", 1)[0]
    if not pid_text.isdigit():
        return False
    try:
        proc = psutil.Process(int(pid_text))
        if proc.status() == psutil.STATUS_ZOMBIE:  # exited, not yet reaped: writes nothing
            return False
        started = proc.create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # cannot tell: keep it
    try:
        written = os.lstat(path).st_mtime
    except FileNotFoundError:
        return True  # gone already
    return started <= written + _START_TIME_SLACK
