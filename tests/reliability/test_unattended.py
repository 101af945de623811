"""Faults an unattended daemon meets over months, each reproduced for real: a disk that fills up
and is then grown, a FIFO named like a log, a planted lock link.

    test ──mounts a small tmpfs as OUT, fills it──▶ mapreduce watch (real process, JSON log)
    test ──grows the tmpfs (remount)──▶ every failed date must be retried until computed
"""
from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.test_watch import (Daemon, assert_matches_oracle, day, daemons, iso,  # noqa: F401
                              make_logs, temps, wait_until)


@pytest.fixture
def small_out(tmp_path: Path) -> Iterator[Path]:
    """OUT as a 1 MiB tmpfs of its own (root only; skipped where mounting is impossible)."""
    out = tmp_path / "out"
    out.mkdir()
    try:
        made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(out)],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs: {exc}")
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {made.stderr.decode().strip()}")
    try:
        yield out
    finally:
        subprocess.run(["umount", "-l", str(out)], timeout=30)


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
