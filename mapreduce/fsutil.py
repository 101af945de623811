"""Files that are never half written: write a temporary file beside the target, then rename.

``os.replace`` within one folder is atomic on POSIX, so a reader sees the old file or the new one,
and a crash leaves at most a ``.tmp-`` file, which :func:`remove_stale_temps` clears.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import BinaryIO, Iterator

TEMP_MARK = ".tmp-"
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_writer(path: str) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; on success it is flushed, synced and renamed."""
    folder, base = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(base), dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode
        with os.fdopen(fd, "wb", buffering=1 << 20) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
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
        if name.startswith(".") and TEMP_MARK in name and not _owner_alive(name):
            path = os.path.join(folder, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            removed.append(name)
    return removed


def _owner_alive(name: str) -> bool:
    import psutil

    pid_text = name.split(TEMP_MARK, 1)[1].split("-", 1)[0]
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    return pid == os.getpid() or psutil.pid_exists(pid)
