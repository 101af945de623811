"""Shared by the reliability tests: run the CLI as a real child process (with a timeout that kills
its whole process group), check its one-line errors, and compute expected outputs directly."""
from __future__ import annotations

import collections
import contextlib
import ctypes
import datetime as dt
import os
import signal
import subprocess
import sys
from typing import Any, Callable, Iterator, Sequence

import orjson
import pytest

from mapreduce.codec import encode
from tests.conftest import ROOT, temp_names
from tests.oracle import parse_line, split_lines

#: every child gets at most this long unless a case says otherwise: a hang fails, never blocks CI
TIMEOUT = 120.0


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=ROOT, **extra)
    env.pop("DASK_SCHEDULER_ADDRESS", None)  # the local executor unless a test asks otherwise
    return env


def start_cli(args: Sequence[str], *, preexec_fn: Callable[[], None] | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m mapreduce.cli ARGS`` in a session of its own, so that the whole run (main
    process and workers) can be killed as one process group."""
    return subprocess.Popen([sys.executable, "-m", "mapreduce.cli", *args], cwd=ROOT,
                            env=env or cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=preexec_fn)


def finish(proc: subprocess.Popen, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        raise AssertionError(f"{proc.args} still running after {timeout}s (a hang); "
                             f"stderr: {err.decode(errors='replace')[-2000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(errors="replace"),
                                       err.decode(errors="replace"))


def run_cli(*args: str, timeout: float = TIMEOUT, **kwargs: Any) -> subprocess.CompletedProcess:
    return finish(start_cli([*args, "--quiet"], **kwargs), timeout)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def assert_error(result: subprocess.CompletedProcess, code: int, *fragments: str,
                 only_line: bool = False) -> str:
    """The documented failure: exit ``code`` and one ``error:`` line, the last on stderr, with no
    traceback. Log warnings may come before it, except for a bad command line (``only_line``)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, \
        result.stderr
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1, result.stderr
    if only_line:
        assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


def write_log(folder: str | os.PathLike, day: dt.date, data: bytes) -> str:
    path = os.path.join(folder, f"listen-{day:%Y%m%d}.log")
    with open(path, "wb") as f:
        f.write(data)
    return path


def corrupt_count(paths: Sequence[str]) -> int:
    """Lines the validity rule rejects, counted with the oracle's plain parser."""
    n = 0
    for path in paths:
        with open(path, "rb") as f:
            n += sum(parse_line(raw) is None for raw in split_lines(f.read()))
    return n


def song_plays_expected(paths: Sequence[str]) -> bytes:
    """What ``jobs.song_plays:SongPlays`` must write: plays of each song on the valid lines (the
    oracle's rule, applied line by line), songs in integer order."""
    counts: collections.Counter[int] = collections.Counter()
    for path in paths:
        with open(path, "rb") as f:
            for raw in split_lines(f.read()):
                parsed = parse_line(raw)
                if parsed:
                    counts[parsed[0]] += 1
    return b"".join(encode(k) + b"\t" + encode(v) + b"\n" for k, v in sorted(counts.items()))


def summary(out: str | os.PathLike, name: str = "top50_20240107.summary.json") -> dict[str, Any]:
    with open(os.path.join(out, name), "rb") as f:
        return orjson.loads(f.read())


def no_temps(*folders: str | os.PathLike) -> None:
    left = [n for folder in folders for n in temp_names(str(folder))]
    assert left == [], left


# ---- making a file really unreadable (or a folder really unwritable) for root ----------------

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2
# Loaded here, before any fork: the child must not run the dynamic loader between fork and exec.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _drop_dac_capabilities() -> None:
    """preexec_fn: remove the two capabilities that let root ignore file modes from the
    bounding set. At exec, root's capabilities are limited to that set, so the child (and the
    workers it spawns) is root without the power to read a mode-000 file."""
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if _LIBC is None or _LIBC.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            os._exit(97)


def permission_bound_preexec() -> Callable[[], None] | None:
    """A preexec_fn under which file modes are enforced, None when they already are (not root).
    Skips the calling test when root cannot give up the override (no CAP_SETPCAP)."""
    if os.geteuid() != 0:
        return None
    probe = subprocess.run([sys.executable, "-c", "open('/proc/self/status').read()"],
                           preexec_fn=_drop_dac_capabilities, timeout=60)
    if probe.returncode != 0:
        pytest.skip("running as root and cannot drop CAP_DAC_OVERRIDE (prctl refused)")
    return _drop_dac_capabilities


@contextlib.contextmanager
def small_tmpfs(path: str | os.PathLike, size: str) -> Iterator[str]:
    """A tmpfs of ``size`` (``1m``) mounted on the folder ``path`` for a real full disk; the test
    is skipped, saying why, where mounting is impossible (not root, no mount)."""
    os.makedirs(path, exist_ok=True)
    try:
        made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs: {exc}")
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {made.stderr.decode().strip()}")
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], timeout=30)
