"""The watch daemon, run for real as a subprocess on a temporary folder.

    test ──writes logs (rename / slow in place / backfill)──▶ LOGS
    test ──starts──▶ mapreduce watch --log-format json --log-file LOG ──▶ OUT, STORE
    test ◀──reads LOG's JSON lines (start, ready, run, idle, stop) and OUT's files──

Every wait has a deadline; the fixture kills any daemon a failed test left running.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from jobs.generate import generate
from mapreduce.store import source_identity
from tests.oracle import reference_files

ROOT = Path(__file__).resolve().parents[2]
END = dt.date(2024, 1, 7)
LINES = 2000
TIMEOUT = 40.0


def day(offset: int) -> dt.date:
    return END + dt.timedelta(days=offset)


def iso(d: dt.date) -> str:
    return f"{d:%Y-%m-%d}"


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), e.get("PYTHONPATH")]))
    return e


def make_log(folder: Path, d: dt.date) -> Path:
    """The generator's log for ``d`` (the same bytes whatever else is generated)."""
    staging = folder.parent / f"gen-{d:%Y%m%d}"
    generate(str(staging), days=1, lines_per_day=LINES, end=d)
    return staging / f"listen-{d:%Y%m%d}.log"


def make_logs(folder: Path, days: list[dt.date]) -> None:
    """Logs already complete when the daemon starts: older than its quiet period."""
    folder.mkdir(parents=True, exist_ok=True)
    old = time.time() - 3600
    for d in days:
        target = folder / f"listen-{d:%Y%m%d}.log"
        shutil.move(make_log(folder, d), target)
        os.utime(target, (old, old))


def drop_by_rename(logs: Path, d: dt.date, data: bytes | None = None) -> None:
    src = make_log(logs, d)
    tmp = logs / f"listen-{d:%Y%m%d}.log.tmp"
    with open(tmp, "wb") as f:
        f.write(data if data is not None else src.read_bytes())
    os.rename(tmp, logs / f"listen-{d:%Y%m%d}.log")


def wait_until(cond: Callable[[], Any], what: str, timeout: float = TIMEOUT,
               daemon: Daemon | None = None, poll: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        if daemon is not None and daemon.proc.poll() is not None:
            raise AssertionError(f"daemon exited ({daemon.proc.returncode}) waiting for {what}:"
                                 f"\n{daemon.stderr_text()}")
        time.sleep(poll)
    tail = daemon.stderr_text()[-3000:] if daemon else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tail}")


def temps(*folders: Path) -> list[str]:
    return [os.path.join(dirpath, name) for folder in folders
            for dirpath, dirnames, filenames in os.walk(folder)
            for name in dirnames + filenames if ".tmp-" in name]


def assert_matches_oracle(logs: Path, out: Path, d: dt.date) -> None:
    country, user = reference_files(str(logs), d, 7, 50)
    assert (out / f"country_top50_{d:%Y%m%d}.txt").read_text() == country, d
    assert (out / f"user_top50_{d:%Y%m%d}.txt").read_text() == user, d


class Daemon:
    def __init__(self, tmp: Path, *extra: str, executor: str = "inline", name: str = "watch"):
        self.logs, self.out = tmp / "logs", tmp / "out"
        self.log_file = tmp / f"{name}.jsonl"
        self.stderr_path = tmp / f"{name}.stderr"
        cmd = [sys.executable, "-m", "mapreduce.cli", "watch", "--logs", str(self.logs),
               "--out", str(self.out), "--reducers", "4", "--quiet-period", "1",
               "--retry-seconds", "1", "--log-format", "json", "--log-file", str(self.log_file),
               "--executor", executor, *(["--workers", "1"] if executor == "local" else []),
               *extra]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, env=env(), cwd=tmp, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        found = []
        try:
            lines = self.log_file.read_text().splitlines()
        except FileNotFoundError:
            return []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line being written
            if kind is None or record.get("event") == kind:
                found.append(record)
        return found

    def runs(self) -> list[str]:
        return [e["date"] for e in self.events("run")]

    def wait_idle(self, count: int = 1) -> None:
        wait_until(lambda: len(self.events("idle")) >= count, f"idle event #{count}",
                   daemon=self)

    def wait_runs(self, count: int) -> list[str]:
        return wait_until(lambda: len(self.runs()) >= count and self.runs(), f"{count} runs",
                          daemon=self)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


@pytest.fixture
def daemons():
    started: list[Daemon] = []

    def start(*args: Any, **kwargs: Any) -> Daemon:
        d = Daemon(*args, **kwargs)
        started.append(d)
        return d

    yield start
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(timeout=10)


def test_catches_up_at_start_oldest_first_and_exits_0_on_sigterm(tmp_path, daemons):
    days = [day(-2), day(-1), day(0)]
    make_logs(tmp_path / "logs", days)
    (tmp_path / "logs" / "notes.txt").write_text("not a log\n")
    (tmp_path / "logs" / "listen-20240231.log").write_text("no such date\n")
    w = daemons(tmp_path)
    w.wait_idle()
    assert w.runs() == [iso(d) for d in days]  # each date once, oldest first
    for d in days:
        assert_matches_oracle(w.logs, w.out, d)
    messages = [e["message"] for e in w.events()]
    for name in ("notes.txt", "listen-20240231.log"):
        assert sum(m.startswith("ignoring") and name in m for m in messages) == 1
    assert w.stop() == 0
    assert temps(w.out) == []

    again = daemons(tmp_path, name="again")  # everything current: a restart computes nothing
    again.wait_idle()
    assert again.runs() == []
    assert again.stop(signal.SIGINT) == 0


def test_log_dropped_by_rename_is_processed_once(tmp_path, daemons):
    make_logs(tmp_path / "logs", [day(-1), day(0)])
    w = daemons(tmp_path)
    w.wait_idle()
    new = day(1)
    src = make_log(w.logs, new)
    tmp = w.logs / f"listen-{new:%Y%m%d}.log.tmp"
    with open(tmp, "wb") as f:  # written slowly under its temporary name, then renamed
        data = src.read_bytes()
        for i in range(0, len(data), len(data) // 3 + 1):
            f.write(data[i:i + len(data) // 3 + 1])
            f.flush()
            time.sleep(0.3)
    os.rename(tmp, w.logs / f"listen-{new:%Y%m%d}.log")
    w.wait_runs(3)
    w.wait_idle(2)
    assert w.runs() == [iso(day(-1)), iso(day(0)), iso(new)]
    reduced = [d for e in w.events("run") for d in e["days_reduced"]]
    assert reduced.count(iso(new)) == 1
    assert_matches_oracle(w.logs, w.out, new)
    ready = w.events("ready")
    assert [e["how"] for e in ready if e["log"] == tmp.name[:-4]] == ["moved_in"]
    # a delivery in progress is no stray: no warning (logged at debug only)
    assert not [e for e in w.events() if tmp.name in e["message"] and e["level"] != "debug"]
    assert w.stop() == 0


@pytest.mark.parametrize("mode", ["close-event", "polling"])
def test_log_written_slowly_in_place_waits_until_complete(tmp_path, daemons, mode):
    make_logs(tmp_path / "logs", [day(0)])
    if mode == "close-event":  # pauses longer than the quiet period: only the close may count
        w, pause = daemons(tmp_path), 1.5
    else:  # no close events: complete once unchanged for the quiet period
        w, pause = daemons(tmp_path, "--polling", "--quiet-period", "3"), 0.5
    w.wait_idle()
    new = day(1)
    data = make_log(w.logs, new).read_bytes()
    target = w.logs / f"listen-{new:%Y%m%d}.log"
    store_day = w.out / "store" / "daily" / f"day-{new:%Y%m%d}"
    with open(target, "wb") as f:
        step = len(data) // 4 + 1
        for i in range(0, len(data), step):
            f.write(data[i:i + step])
            f.flush()
            time.sleep(pause)
            assert not store_day.exists(), "reduced while still being written"
            assert w.runs() == [iso(day(0))]
    w.wait_runs(2)
    assert w.runs() == [iso(day(0)), iso(new)]
    manifest = json.loads((store_day / "manifest.json").read_text())
    assert manifest["source"]["identity"] == source_identity(str(target))
    assert manifest["lines"] == LINES
    assert_matches_oracle(w.logs, w.out, new)
    assert w.stop() == 0


def test_older_day_recomputes_the_windows_that_hold_it(tmp_path, daemons):
    make_logs(tmp_path / "logs", [day(-4), day(-3), day(-1), day(0)])  # day(-2) comes late
    w = daemons(tmp_path)
    w.wait_idle()
    first = w.out / f"country_top50_{day(-4):%Y%m%d}.txt"
    before = first.stat().st_mtime_ns
    drop_by_rename(w.logs, day(-2))  # backfill
    w.wait_runs(7)
    w.wait_idle(2)
    assert w.runs()[4:] == [iso(day(-2)), iso(day(-1)), iso(day(0))]
    # a corrected re-delivery of day(-3): half its lines, renamed over the old file
    data = (w.logs / f"listen-{day(-3):%Y%m%d}.log").read_bytes()
    drop_by_rename(w.logs, day(-3), data[:data.index(b"\n", len(data) // 2) + 1])
    w.wait_runs(11)
    w.wait_idle(3)
    assert w.runs()[7:] == [iso(day(-3)), iso(day(-2)), iso(day(-1)), iso(day(0))]
    assert first.stat().st_mtime_ns == before  # its window holds neither day
    for d in (day(-4), day(-3), day(-2), day(-1), day(0)):
        assert_matches_oracle(w.logs, w.out, d)
    assert w.stop() == 0


# A worker process, 64 partitions and small splits: each stage is a few hundred task round trips
# (tenths of a second), long enough to be caught by a 5 ms poll however loaded the machine is.
SLOW_RUN = ("--reducers", "64", "--split-size", "4k")


def in_progress(folder: Path, prefix: str = ".") -> bool:
    """A temporary name at the top of ``folder``: a store's day staging (``.day-``), or OUT's
    window scratch and files being written."""
    try:
        return any(n.startswith(prefix) and ".tmp-" in n for n in os.listdir(folder))
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("stage", ["reduction", "window"])
def test_sigkill_mid_run_then_restart_loses_nothing(tmp_path, daemons, stage):
    days = [day(-2), day(-1), day(0)]
    make_logs(tmp_path / "logs", days)
    w = daemons(tmp_path, *SLOW_RUN, executor="local")
    folder, prefix = (w.out / "store" / "daily", ".day-") if stage == "reduction" else (w.out, ".")
    wait_until(lambda: in_progress(folder, prefix), f"a {stage} in progress", timeout=60,
               daemon=w, poll=0.005)
    w.proc.kill()
    w.proc.wait(timeout=10)
    assert w.runs() != [iso(d) for d in days]  # it was cut short
    again = daemons(tmp_path, name="again")
    again.wait_idle()
    for d in days:
        assert_matches_oracle(again.logs, again.out, d)
    assert temps(again.out) == []
    assert again.stop() == 0


def test_sigterm_during_a_run_exits_0_and_leaves_no_temporary_file(tmp_path, daemons):
    make_logs(tmp_path / "logs", [day(0)])
    w = daemons(tmp_path, *SLOW_RUN, executor="local")
    wait_until(lambda: in_progress(w.out / "store" / "daily", ".day-"), "a reduction in progress",
               timeout=60, daemon=w, poll=0.005)
    assert w.stop() == 0
    assert temps(w.out) == []
    assert w.events("stop")


def test_top50_alongside_the_daemon_and_waiting_for_the_lock(tmp_path, daemons):
    make_logs(tmp_path / "logs", [day(-1), day(0)])
    w = daemons(tmp_path)
    w.wait_idle()
    # a held lock: the daemon waits, writing nothing, then finishes once it is free
    with open(w.out / "store" / ".lock", "r+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        drop_by_rename(w.logs, day(1))
        wait_until(lambda: w.events("lock_wait"), "lock_wait event", daemon=w)
        time.sleep(0.5)
        assert not (w.out / f"top50_{day(1):%Y%m%d}.summary.json").exists()
    w.wait_runs(3)
    w.wait_idle(2)
    # two `mapreduce top50` (as from cron) on the same store and folder while a new day arrives
    # for the daemon: the lock orders them, whichever comes first
    cmd = [sys.executable, "-m", "mapreduce.cli", "top50", "--logs", str(w.logs), "--out",
           str(w.out), "--executor", "local", "--workers", "1", "--quiet"]
    crons = [subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    time.sleep(0.5)
    drop_by_rename(w.logs, day(2))
    for cron in crons:
        _, err = cron.communicate(timeout=60)
        assert cron.returncode == 0, err
    w.wait_idle(3)
    for d in (day(0), day(1), day(2)):
        assert_matches_oracle(w.logs, w.out, d)
        json.loads((w.out / f"top50_{d:%Y%m%d}.summary.json").read_text())
    assert temps(w.out) == []
    assert w.stop() == 0


def test_no_wait_exits_1_when_the_store_is_locked_at_start(tmp_path, daemons):
    make_logs(tmp_path / "logs", [day(0)])
    (tmp_path / "out" / "store").mkdir(parents=True)
    with open(tmp_path / "out" / "store" / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        w = daemons(tmp_path, "--no-wait")
        assert w.proc.wait(timeout=30) == 1
    err = w.stderr_text().strip().splitlines()
    assert err[-1].startswith("error: --no-wait: another job") and len(err) == 1, err


def test_unreadable_log_is_reported_once_and_retried(tmp_path, daemons):
    make_logs(tmp_path / "logs", [day(-1)])
    bad = tmp_path / "logs" / f"listen-{day(0):%Y%m%d}.log"
    bad.mkdir()  # a log name that cannot be read as a file (root reads any mode)
    w = daemons(tmp_path)  # --retry-seconds 1
    w.wait_idle()
    assert w.runs() == [iso(day(-1))]
    assert w.events("idle")[0]["deferred"] == [iso(day(0))]
    time.sleep(2.5)  # a few retries: still alive, and said once
    assert w.proc.poll() is None
    assert [e["log"] for e in w.events("unreadable")] == [bad.name]
    bad.rmdir()
    drop_by_rename(w.logs, day(0))
    w.wait_runs(2)
    assert w.runs() == [iso(day(-1)), iso(day(0))]
    assert w.events("readable")
    assert_matches_oracle(w.logs, w.out, day(0))
    assert w.stop() == 0


def test_replaced_logs_folder_exits_1_for_a_restart(tmp_path, daemons):
    make_logs(tmp_path / "logs", [day(0)])
    w = daemons(tmp_path)
    w.wait_idle()
    os.rename(w.logs, tmp_path / "logs.old")  # the watch follows the old folder's inode
    w.logs.mkdir()
    assert w.proc.wait(timeout=20) == 1
    assert "was removed or replaced" in w.stderr_text().strip().splitlines()[-1]
    assert temps(w.out) == []


def test_store_in_the_logs_folder_is_a_usage_error(tmp_path):
    """Checked before the daemon starts: exit 2 at once, never a retry loop writing into LOGS."""
    logs = tmp_path / "logs"
    logs.mkdir()
    proc = subprocess.run([sys.executable, "-m", "mapreduce.cli", "watch", "--logs", str(logs),
                           "--out", str(tmp_path / "out"), "--store", str(logs)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --store must not be the logs folder: its files would be mixed with the logs"]
    assert os.listdir(logs) == []
