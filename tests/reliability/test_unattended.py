"""Faults an unattended daemon meets over months, each reproduced for real: a disk that fills up
and is then grown, a FIFO named like a log, a planted lock link.

    test ──mounts a small tmpfs as OUT, fills it──▶ mapreduce watch (real process, JSON log)
    test ──grows the tmpfs (remount)──▶ every failed date must be retried until computed
"""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.jobs.test_watch import (Daemon, assert_matches_oracle, day, daemons, iso,  # noqa: F401
                              drop_by_rename, make_logs, temps, wait_until)
from tests.reliability.helpers import assert_error, assert_ok, run_cli, small_tmpfs


@pytest.fixture
def small_out(tmp_path: Path) -> Iterator[Path]:
    """OUT as a 1 MiB tmpfs of its own (root only; skipped where mounting is impossible)."""
    out = tmp_path / "out"
    with small_tmpfs(out, "1m"):
        yield out


def _fill(mount: Path) -> None:
    """Write a ballast file until the file system refuses more: it is full for real."""
    with open(mount / "ballast", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    assert os.statvfs(mount).f_bavail == 0


def test_failed_dates_are_all_retried_once_the_disk_has_room(tmp_path, small_out, daemons):
    """Issue 14: with many dates failing on a full disk, some were never retried once space came
    back (`next_retry` cleared when it fired, the dates not yet due skipped and forgotten)."""
    days = [day(-i) for i in range(23, -1, -1)]  # 24 dates
    make_logs(tmp_path / "logs", days)
    _fill(small_out)
    w = daemons(tmp_path, "--store", str(tmp_path / "store"))  # --retry-seconds 1
    # every date has failed at least twice: retries run and fail, their times spread apart
    wait_until(lambda: all(sum(e.get("date") == iso(d) for e in w.events("failed")) >= 2
                           for d in days), "every date failed twice", timeout=120, daemon=w)
    assert w.runs() == []
    assert all("No space left on device" in e["error"] for e in w.events("failed"))
    grown = subprocess.run(["mount", "-o", "remount,size=64m", str(small_out)],
                           capture_output=True, timeout=30)
    assert grown.returncode == 0, grown.stderr
    wait_until(lambda: set(w.runs()) >= {iso(d) for d in days}, "every date computed",
               timeout=120, daemon=w)
    # and then waits, with nothing left to retry
    last = wait_until(lambda: [e for e in w.events() if e.get("event") in ("run", "failed",
                               "idle")][-1:], "an event after the last run", daemon=w)
    wait_until(lambda: w.events()[-1].get("event") == "idle", "idle after the last run",
               daemon=w)
    assert w.events("idle")[-1]["retry"] == [], last
    for d in days:
        assert_matches_oracle(w.logs, w.out, d)
    assert temps(w.out) == []
    assert w.stop() == 0


def _stopped_within(w: Daemon, seconds: float) -> int:
    w.proc.send_signal(signal.SIGTERM)
    try:
        return w.proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"SIGTERM did not end the daemon within {seconds}s (a hang)") \
            from None


def test_fifo_named_like_a_log_is_unreadable_not_a_hang(tmp_path, daemons):
    """Issue 14: `mkfifo LOGS/listen-D.log` hung the daemon for ever in open(), no date computed
    and SIGTERM ignored. Now the FIFO is never opened: its dates wait, reported once, the others
    are computed, and SIGTERM still ends the daemon with 0."""
    days = [day(-9), day(-8), day(-1), day(0)]
    make_logs(tmp_path / "logs", days)
    fifo = tmp_path / "logs" / f"listen-{day(-7):%Y%m%d}.log"  # in the windows of -7 .. -1
    os.mkfifo(fifo)
    old = time.time() - 3600
    os.utime(fifo, (old, old))
    w = daemons(tmp_path)  # --retry-seconds 1
    w.wait_idle()
    assert w.runs() == [iso(day(-9)), iso(day(-8)), iso(day(0))]
    assert sorted(w.events("idle")[-1]["deferred"]) == [iso(day(-7)), iso(day(-1))]
    time.sleep(2.5)  # a few retries: still said once
    unreadable = w.events("unreadable")
    assert [e["log"] for e in unreadable] == [fifo.name], unreadable
    assert "not a regular file" in unreadable[0]["reason"], unreadable
    # one made while the daemon runs is no "log being written" waiting for ever either
    late = tmp_path / "logs" / f"listen-{day(3):%Y%m%d}.log"
    os.mkfifo(late)
    wait_until(lambda: any(e["log"] == late.name for e in w.events("unreadable")),
               "the new FIFO reported", daemon=w)
    for d in (day(-9), day(-8), day(0)):
        assert_matches_oracle(w.logs, w.out, d)
    assert _stopped_within(w, 5) == 0
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.mark.parametrize("which", ["in the window", "outside the window"])
def test_top50_with_a_fifo_in_the_logs_folder_does_not_hang(tmp_path, which):
    logs = tmp_path / "logs"
    make_logs(logs, [day(-1), day(0)])
    fifo = logs / f"listen-{(day(-3) if which == 'in the window' else day(-20)):%Y%m%d}.log"
    os.mkfifo(fifo)
    result = run_cli("top50", "--logs", str(logs), "--out", str(tmp_path / "out"),
                     "--executor", "local", "--workers", "1", timeout=60)
    if which == "in the window":  # a day it needs cannot be read: the run fails, one line
        assert_error(result, 1, str(fifo), "not a regular file")
    else:
        assert_ok(result)
        assert_matches_oracle(logs, tmp_path / "out", day(0))


@pytest.mark.parametrize("plant", ["symlink", "dangling symlink", "hard link", "foreign file",
                                   "fifo"])
def test_planted_store_lock_is_refused_and_its_target_untouched(tmp_path, plant):
    """Issue 14: STORE/.lock was opened with O_CREAT following symlinks, then truncated and
    written: a link planted there made a run truncate any file its user could write."""
    logs, out = tmp_path / "logs", tmp_path / "out"
    make_logs(logs, [day(-1), day(0)])
    store = out / "store"
    store.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    content = b"precious: not a lock\n" * 100
    victim.write_bytes(content)
    lock = store / ".lock"
    if plant == "symlink":
        lock.symlink_to(victim)
    elif plant == "dangling symlink":  # O_CREAT through it would create the target
        victim.unlink()
        lock.symlink_to(victim)
    elif plant == "hard link":
        os.link(victim, lock)
    elif plant == "foreign file":  # a regular file no run wrote: not ours to truncate
        lock.write_bytes(content)
    else:
        os.mkfifo(lock)
    result = run_cli("top50", "--logs", str(logs), "--out", str(out), "--executor", "inline",
                     timeout=60)
    line = assert_error(result, 1, str(lock))
    assert "lock" in line, line
    if plant == "dangling symlink":
        assert not victim.exists()
    else:
        assert victim.read_bytes() == content
    if plant == "foreign file":
        assert lock.read_bytes() == content
    assert not (out / "country_top50_20240107.txt").exists()
    # once the plant is gone, the run takes the lock as usual
    lock.unlink()
    assert_ok(run_cli("top50", "--logs", str(logs), "--out", str(out), "--executor", "inline",
                      timeout=60))
    assert_matches_oracle(logs, out, day(0))
    assert lock.read_bytes().strip().isdigit()


def test_deliveries_in_progress_are_not_warned_about(tmp_path, daemons):
    """Issue 14: every delivery made as the docs advise (write listen-D.log.tmp, then rename)
    drew a warning "ignoring listen-D.log.tmp", from the daemon's scans and from each run's.
    Such names, and the project's own .NAME.tmp-PID- temporaries, are logged at debug only;
    a real stray name still warns."""
    logs = tmp_path / "logs"
    make_logs(logs, [day(-1), day(0)])
    slow = logs / f"listen-{day(2):%Y%m%d}.log.tmp"   # a delivery under way for the whole test
    slow.write_bytes(b"1|2|FR\n")
    own = logs / f".listen-{day(3):%Y%m%d}.log.tmp-4242-abcd"  # a copy made with fsutil's names
    own.write_bytes(b"")
    (logs / "notes.txt").write_text("a stray\n")
    w = daemons(tmp_path)  # runs happen while both exist: each run's scan sees them too
    w.wait_idle()
    drop_by_rename(w.logs, day(1))  # the documented way, while the daemon watches
    w.wait_runs(3)
    w.wait_idle(2)
    assert w.runs() == [iso(day(-1)), iso(day(0)), iso(day(1))]
    loud = [e for e in w.events() if e["level"] in ("warning", "error")]
    assert [e for e in loud if ".tmp" in e["message"]] == [], loud
    assert sum("notes.txt" in e["message"] for e in loud) == 1, loud
    assert_matches_oracle(w.logs, w.out, day(1))
    assert w.stop() == 0
