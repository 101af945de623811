"""A full disk (ENOSPC) while the store or the outputs are being written: a clear one-line error,
exit 1, the previous good files untouched (all of them: never a new country file beside an old
user file), no temporary file left, and once there is room again a rerun gives the right files.

Two ways to fill the disk: in process, every write to a file is counted and the Nth one and all
after it fail (every N over a run's writes, so every place a write happens is hit); and for real,
a small tmpfs mounted as root, filled with ballast to leave a chosen number of bytes free."""
from __future__ import annotations

import builtins
import datetime as dt
import errno
import os
import shutil

import pytest

from jobs.generate import generate
from mapreduce.store import Store
from mapreduce.cli import main
from tests.conftest import DAY
from tests.oracle import reference_files
from tests.reliability.helpers import assert_error, no_temps, run_cli, small_tmpfs

OUTPUTS = ("country_top50_20240107.txt", "user_top50_20240107.txt", "top50_20240107.summary.json")


class DiskFull:
    """Counts writes to files opened for writing; from the ``fail_at``-th on, each one fails
    with ENOSPC, as on a disk that filled up and stays full."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.writes = 0

    def wrap(self, f):
        mode = getattr(f, "mode", "")
        if isinstance(mode, str) and any(c in mode for c in "wax+"):
            return _Counted(f, self)
        return f


class _Counted:
    def __init__(self, f, disk: DiskFull) -> None:
        self._f, self._disk = f, disk

    def write(self, data):
        self._disk.writes += 1
        if self._disk.fail_at is not None and self._disk.writes >= self._disk.fail_at:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._f.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


@pytest.fixture
def disk_full(monkeypatch):
    """Install a DiskFull on ``open`` and ``os.fdopen`` (what codec, window and fsutil write
    through) for this process; the run must use the inline executor to be seen."""
    disk = DiskFull()
    real_open, real_fdopen = builtins.open, os.fdopen
    monkeypatch.setattr(builtins, "open", lambda *a, **k: disk.wrap(real_open(*a, **k)))
    monkeypatch.setattr(os, "fdopen", lambda *a, **k: disk.wrap(real_fdopen(*a, **k)))
    return disk


def _cli(logs, out, capsys) -> tuple[int, str]:
    code = main(["top50", "--logs", str(logs), "--out", str(out), "--executor", "inline",
                 "--quiet", "--reducers", "3", "--split-size", "40k"])
    return code, capsys.readouterr().err


def _snapshot(out) -> dict[str, bytes]:
    return {n: (out / n).read_bytes() for n in OUTPUTS}


def _new_data(logs) -> None:
    """A changed log (reduced again) and more users on it, so every output file changes."""
    with open(logs / f"listen-{DAY:%Y%m%d}.log", "ab") as f:
        f.write(b"".join(f"{i % 7 + 1}|{900000 + i}|FR\n".encode() for i in range(300)))


@pytest.fixture
def before(tmp_path_factory):
    """Logs and an output folder holding a good run's files and store, made once per test."""
    root = tmp_path_factory.mktemp("before")
    logs, out = root / "logs", root / "out"
    generate(str(logs), days=2, lines_per_day=1500, end=DAY)
    assert main(["top50", "--logs", str(logs), "--out", str(out), "--executor", "inline",
                 "--quiet", "--reducers", "3"]) == 0
    _new_data(logs)
    return logs, out


def test_enospc_at_every_write(tmp_path, before, disk_full, capsys):
    logs, pristine = before
    good = _snapshot(pristine)
    country, user = reference_files(str(logs), DAY, 7, 50)

    # how many writes a successful run makes
    probe = tmp_path / "probe"
    shutil.copytree(pristine, probe)
    assert _cli(logs, probe, capsys)[0] == 0
    total = disk_full.writes
    assert total > 20
    for n in range(1, total + 1):  # every write: a spill, a table, the manifest, each output
        out = tmp_path / f"n{n}"
        shutil.copytree(pristine, out)
        disk_full.fail_at, disk_full.writes = n, 0
        code, err = _cli(logs, out, capsys)
        lines = [l for l in err.strip().splitlines() if l]
        assert code == 1 and len(lines) == 1, (n, err)
        assert lines[0].startswith("error: ") and "No space left on device" in lines[0], (n, err)
        assert _snapshot(out) == good, f"write {n}: previous files changed"
        store = Store(str(out / "store"), 3, step="daily")
        for day in (DAY - dt.timedelta(days=1), DAY):  # old or new, but whole
            assert store.manifest(day) is not None, f"write {n}: day {day} lost"
        no_temps(out)
        # room again: the same folder and store give the right files
        disk_full.fail_at = None
        assert _cli(logs, out, capsys)[0] == 0
        assert (out / OUTPUTS[0]).read_text() == country, n
        assert (out / OUTPUTS[1]).read_text() == user, n
        no_temps(out)
        shutil.rmtree(out)


# ---- a real full file system --------------------------------------------------------------

@pytest.fixture
def tmpfs(tmp_path):
    mount = tmp_path / "tmpfs"
    with small_tmpfs(mount, "4m"):
        yield mount


def _leave_free(mount, free: int) -> None:
    """Fill the file system with a ballast file until ``free`` bytes are left."""
    ballast = mount / "ballast"
    if ballast.exists():
        ballast.unlink()
    st = os.statvfs(mount)
    with open(ballast, "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - free))


@pytest.mark.parametrize("where", ["store", "output"])
def test_real_full_filesystem(tmp_path, tmpfs, before, where):
    """``where=store``: the store is on the small file system (and the outputs elsewhere);
    ``where=output``: the outputs are (and the store elsewhere). Free space is swept from nothing
    to plenty, on the process pool: each run fails cleanly or succeeds with the right files."""
    logs, pristine = before
    country, user = reference_files(str(logs), DAY, 7, 50)
    if where == "store":
        out, store = tmp_path / "out", tmpfs / "store"
        shutil.copytree(pristine, out, ignore=shutil.ignore_patterns("store"))
        shutil.copytree(pristine / "store", store)
    else:
        out, store = tmpfs / "out", tmp_path / "store"
        shutil.copytree(pristine, out, ignore=shutil.ignore_patterns("store"))
        shutil.copytree(pristine / "store", store)
    good = _snapshot(out)
    outcomes = []
    for free in (0, 8 << 10, 48 << 10, 96 << 10, 160 << 10, 320 << 10, 2 << 20):
        _leave_free(tmpfs, free)
        result = run_cli("top50", "--logs", str(logs), "--out", str(out), "--store", str(store),
                         "--workers", "2", "--reducers", "3", "--split-size", "40k", timeout=90)
        if result.returncode == 0:
            assert (out / OUTPUTS[0]).read_text() == country
            assert (out / OUTPUTS[1]).read_text() == user
            outcomes.append("ok")
        else:
            # refused up front by the free-space check, or ENOSPC when the estimate was short
            assert_error(result, 1)
            assert ("No space left on device" in result.stderr
                    or "not enough free space" in result.stderr), result.stderr
            assert _snapshot(out) == good, f"{free} bytes free: previous files changed"
            outcomes.append("full")
        no_temps(out, store)
        if outcomes[-1] == "ok":
            break
    assert outcomes[0] == "full" and outcomes[-1] == "ok", outcomes
