"""A log that grows, shrinks or is rewritten while it is being read: the run fails with a message
saying so, stores nothing for that day, leaves the previous outputs as they were, and a rerun once
the writer is done gives the right files."""
from __future__ import annotations

import os
import threading
import time

import pytest

import mapreduce.store
import mapreduce.runner
from jobs.generate import generate
from jobs.top50 import Top50
from mapreduce.windowed import run_window_job
from mapreduce.errors import JobError
from mapreduce.runner import run_job
from tests.conftest import DAY
from tests.oracle import reference_files
from tests.reliability.helpers import (assert_error, assert_ok, no_temps, run_cli, start_cli,
                                       finish)

CHANGED = "changed while it was being read"
OUTPUTS = ("country_top50_20240107.txt", "user_top50_20240107.txt", "top50_20240107.summary.json")


def _grow(path: str) -> None:
    with open(path, "ab") as f:
        f.write(b"99|99|FR\n" * 100)


def _shrink(path: str) -> None:
    os.truncate(path, os.path.getsize(path) // 2)


def _after_planning(monkeypatch, change) -> list[str]:
    """Change the log just after the runner planned its splits, before any task reads it."""
    changed: list[str] = []
    real = mapreduce.runner.plan_splits

    def plan_then_change(paths, split_size, *args, **kwargs):
        splits = real(paths, split_size, *args, **kwargs)
        if not changed:
            change(paths[-1])
            changed.append(paths[-1])
        return splits

    monkeypatch.setattr(mapreduce.runner, "plan_splits", plan_then_change)
    return changed


def _week(tmp_path, backend):
    logs, out = tmp_path / "logs", tmp_path / "out"
    generate(str(logs), days=3, lines_per_day=3000, end=DAY)
    run_window_job(Top50(), str(logs), str(out), backend, partitions=4, split_size=16_000)
    return logs, out, {n: (out / n).read_bytes() for n in OUTPUTS}


@pytest.mark.parametrize("change", [_grow, _shrink], ids=["grows", "shrinks"])
def test_top50_refuses_a_log_that_changes_while_reduced(tmp_path, backend, monkeypatch, change):
    logs, out, before = _week(tmp_path, backend)
    victim = logs / f"listen-{DAY:%Y%m%d}.log"
    os.utime(victim, ns=(0, 0))  # a new identity: the day is reduced again, and changes meanwhile
    manifest = out / "store" / "daily" / f"day-{DAY:%Y%m%d}" / "manifest.json"
    stored = manifest.read_bytes()
    changed = _after_planning(monkeypatch, change)
    with pytest.raises(JobError, match=CHANGED) as info:
        run_window_job(Top50(), str(logs), str(out), backend, partitions=4, split_size=16_000)
    assert changed == [str(victim)] and str(victim) in str(info.value)
    assert {n: (out / n).read_bytes() for n in OUTPUTS} == before  # previous files untouched
    assert manifest.read_bytes() == stored  # nothing new stored for that day
    no_temps(out)

    monkeypatch.undo()  # the writer has finished: a rerun reduces the day as it now is
    run_window_job(Top50(), str(logs), str(out), backend, partitions=4)
    country, user = reference_files(str(logs), DAY, 7, 50)
    assert (out / OUTPUTS[0]).read_text() == country and (out / OUTPUTS[1]).read_text() == user


def test_store_refuses_same_size_rewrite_with_mtime_put_back(tmp_path, inline_backend,
                                                             monkeypatch):
    """Size and mtime alone cannot see this one; the content fingerprint does."""
    logs, out, before = _week(tmp_path, inline_backend)
    victim = str(logs / f"listen-{DAY:%Y%m%d}.log")
    os.utime(victim, ns=(0, 0))
    real = mapreduce.store.run_job

    def reduce_then_rewrite(*args, **kwargs):
        result = real(*args, **kwargs)
        st = os.stat(victim)
        with open(victim, "r+b") as f:
            f.write(b"0|0|FR\n")  # same size: overwrite the first bytes in place
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
        return result

    manifest = out / "store" / "daily" / f"day-{DAY:%Y%m%d}" / "manifest.json"
    stored = manifest.read_bytes()
    monkeypatch.setattr(mapreduce.store, "run_job", reduce_then_rewrite)
    with pytest.raises(JobError, match=f"{victim} {CHANGED}; run again once its writer"):
        run_window_job(Top50(), str(logs), str(out), inline_backend, partitions=4)
    assert {n: (out / n).read_bytes() for n in OUTPUTS} == before
    assert manifest.read_bytes() == stored
    no_temps(out)


@pytest.mark.parametrize("change", [_grow, _shrink], ids=["grows", "shrinks"])
def test_run_refuses_an_input_that_changes_while_read(tmp_path, backend, monkeypatch, change):
    paths = generate(str(tmp_path / "logs"), days=2, lines_per_day=2000, end=DAY)
    out = tmp_path / "plays" / "song_plays.tsv"
    run_job("jobs.song_plays:SongPlays", paths, str(out), backend, reducers=3, split_size=8000)
    before = out.read_bytes()
    _after_planning(monkeypatch, change)
    with pytest.raises(JobError, match=f"{paths[-1]} {CHANGED}"):
        run_job("jobs.song_plays:SongPlays", paths, str(out), backend, reducers=3,
                split_size=8000)
    assert out.read_bytes() == before
    no_temps(tmp_path)


def test_cli_with_a_live_writer_then_after_it(tmp_path):
    """A real writer appending all through a ``top50`` child: exit 1, the message, the previous
    files intact; once the writer stops, a rerun is right."""
    logs, out = tmp_path / "logs", tmp_path / "out"
    generate(str(logs), days=2, lines_per_day=20_000, end=DAY)
    assert_ok(run_cli("top50", "--logs", str(logs), "--out", str(out), "--workers", "2"))
    before = {n: (out / n).read_bytes() for n in OUTPUTS}
    victim = logs / f"listen-{DAY:%Y%m%d}.log"
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            with open(victim, "ab") as f:
                f.write(b"5|5|FR\n" * 50)
            time.sleep(0.002)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        proc = start_cli(["top50", "--logs", str(logs), "--out", str(out), "--workers", "2",
                          "--split-size", "64k", "--quiet"])
        result = finish(proc)
    finally:
        stop.set()
        thread.join()
    assert_error(result, 1, f"{victim} {CHANGED}")
    assert {n: (out / n).read_bytes() for n in OUTPUTS} == before
    assert_ok(run_cli("top50", "--logs", str(logs), "--out", str(out), "--workers", "2",
                      "--no-wait"))
    country, user = reference_files(str(logs), DAY, 7, 50)
    assert (out / OUTPUTS[0]).read_text() == country and (out / OUTPUTS[1]).read_text() == user
    no_temps(out)
