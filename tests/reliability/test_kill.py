"""SIGKILL: of a whole ``top50`` run at random moments, and of one worker process.

A killed run leaves at most whole files from before (or whole new ones), temporary files that the
next run clears, and no lock: the kernel drops a dead process's flock. A rerun with ``--no-wait``
(which would fail on a lock held by anyone) gives files identical to a clean run's."""
from __future__ import annotations

import os
import random
import time

import orjson
import psutil
import pytest

from jobs.generate import generate
from jobs.top50 import Top50
from mapreduce.windowed import run_window_job
from mapreduce.executors import make_backend
from tests.conftest import DAY
from tests.oracle import reference_files
from tests.reliability.jobs import DailyListensKillsItsWorkerOnce
from tests.reliability.helpers import (assert_ok, finish, kill_group, no_temps, start_cli)

FILES = ("country_top50_20240107.txt", "user_top50_20240107.txt")
SUMMARY = "top50_20240107.summary.json"


def _args(logs, out, *extra: str) -> list[str]:
    return ["top50", "--logs", str(logs), "--out", str(out), "--workers", "2",
            "--reducers", "4", "--split-size", "256k", "--quiet", *extra]


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    """A generated week, the files of a clean run over it (checked against the oracle), and how
    long a run takes that reduces two days again (what the kills below interrupt)."""
    root = tmp_path_factory.mktemp("kill")
    logs = root / "logs"
    generate(str(logs), days=7, lines_per_day=25_000, end=DAY)
    assert_ok(finish(start_cli(_args(logs, root / "clean"))))
    for name in sorted(os.listdir(logs))[:2]:
        os.utime(logs / name)
    started = time.perf_counter()
    assert_ok(finish(start_cli(_args(logs, root / "clean"))))
    seconds = time.perf_counter() - started
    clean = {n: (root / "clean" / n).read_bytes() for n in FILES}
    country, user = reference_files(str(logs), DAY, 7, 50)
    assert clean[FILES[0]].decode() == country and clean[FILES[1]].decode() == user
    return logs, clean, seconds


def _check_after_kill(out, clean) -> None:
    """Whatever the moment of the kill: each output there is whole (a clean run's bytes: the
    logs did not change) and the summary is whole JSON."""
    for name in FILES:
        if (out / name).exists():
            assert (out / name).read_bytes() == clean[name], name
    if (out / SUMMARY).exists():
        orjson.loads((out / SUMMARY).read_bytes())


@pytest.mark.slow
def test_sigkill_of_the_whole_run_at_random_moments(tmp_path, week):
    logs, clean, seconds = week
    rng = random.Random(20240107)
    out = tmp_path / "out"
    days = sorted(os.listdir(logs))
    moments = []
    for i in range(24):
        # Give the run work at every stage: some days get a new identity (reduced again),
        # sometimes the whole store or the outputs are gone.
        for name in rng.sample(days, rng.randint(1, 3)):
            now = time.time_ns()
            os.utime(logs / name, ns=(now, now + i))
        if rng.random() < 0.2 and (out / "store" / "daily").exists():
            for entry in (out / "store" / "daily").iterdir():
                if entry.name.startswith("day-") and rng.random() < 0.5:
                    entry.rename(tmp_path / f"gone-{i}-{entry.name}")  # as if never made
        proc = start_cli(_args(logs, out))
        # from start-up (before the lock) to the end of the merge; a few land after the end
        moment = rng.uniform(0.05, 1.2 * seconds)
        moments.append(round(moment, 2))
        time.sleep(moment)
        kill_group(proc)
        proc.communicate(timeout=60)
        _check_after_kill(out, clean)

        result = finish(start_cli(_args(logs, out, "--no-wait")))
        assert_ok(result)
        assert {n: (out / n).read_bytes() for n in FILES} == clean, f"kill at {moment:.2f}s"
        info = orjson.loads((out / SUMMARY).read_bytes())
        assert info["output_lines"] == {"country": clean[FILES[0]].count(b"\n"),
                                        "user": clean[FILES[1]].count(b"\n")}
        no_temps(out)
    assert len(moments) >= 20


def test_sigkill_of_one_worker_is_retried(tmp_path, monkeypatch, caplog):
    """Deterministic: the first map block of the daily reduction kills its own worker."""
    logs, out = tmp_path / "logs", tmp_path / "out"
    generate(str(logs), days=3, lines_per_day=5000, end=DAY)
    marker = tmp_path / "killed"
    monkeypatch.setenv("MR_TEST_KILL_MARKER", str(marker))  # before the pool's workers start
    monkeypatch.setattr(Top50, "per_input", DailyListensKillsItsWorkerOnce)
    with make_backend("local", 2) as backend:
        run_window_job(Top50(), str(logs), str(out), backend, partitions=4, split_size=30_000)
    assert marker.exists() and "worker process died; retrying" in caplog.text
    country, user = reference_files(str(logs), DAY, 7, 50)
    assert (out / FILES[0]).read_text() == country and (out / FILES[1]).read_text() == user
    no_temps(out)


def _workers(proc) -> list[psutil.Process]:
    try:
        children = psutil.Process(proc.pid).children()
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            if "resource_tracker" not in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            pass
    return found


@pytest.mark.slow
def test_sigkill_of_one_worker_from_outside_at_random_moments(tmp_path, week):
    """A worker killed from outside, busy or idle, in any stage: the run still ends with the
    clean files (a lost task is run again; a pool broken between tasks is renewed)."""
    logs, clean, seconds = week
    rng = random.Random(7)
    out = tmp_path / "out"
    days = sorted(os.listdir(logs))
    killed = 0
    for i in range(6):
        for name in rng.sample(days, 3):
            now = time.time_ns()
            os.utime(logs / name, ns=(now, now + i))
        proc = start_cli(_args(logs, out))
        deadline = time.monotonic() + rng.uniform(0.3, seconds)
        victim = None
        while time.monotonic() < deadline and proc.poll() is None:
            workers = _workers(proc)
            if workers:
                victim = rng.choice(workers)
            time.sleep(0.02)
        if victim is not None and proc.poll() is None:
            try:
                victim.kill()
                killed += 1
            except psutil.NoSuchProcess:
                pass
        result = finish(proc)
        assert_ok(result)
        assert {n: (out / n).read_bytes() for n in FILES} == clean
        no_temps(out)
    assert killed >= 3


def test_worker_killed_while_idle_between_runs(tmp_path):
    """A worker that dies with no task (between stages, say, picked by the OOM killer): the next
    stage must run on a new worker, not fail."""
    logs = tmp_path / "logs"
    generate(str(logs), days=2, lines_per_day=3000, end=DAY)
    with make_backend("local", 2) as backend:
        run_window_job(Top50(), str(logs), str(tmp_path / "first"), backend, partitions=4)
        pool = backend.executor
        workers = [p for p in psutil.Process().children() if p.pid in pool.pids()]
        assert workers
        workers[0].kill()
        deadline = time.monotonic() + 30
        while workers[0].pid in pool.pids() and time.monotonic() < deadline:
            time.sleep(0.02)  # the pool notices the death in its own thread
        assert workers[0].pid not in pool.pids()
        run_window_job(Top50(), str(logs), str(tmp_path / "second"), backend, partitions=4)
    country, user = reference_files(str(logs), DAY, 7, 50)
    second = tmp_path / "second"
    assert (second / FILES[0]).read_text() == country and (second / FILES[1]).read_text() == user
