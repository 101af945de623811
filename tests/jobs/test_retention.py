"""Retention and metrics over time: the real daemon over 40 days with --keep-days 8
--keep-outputs 3, then the one-shot commands' retention and free-space check."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
from prometheus_client.parser import text_string_to_metric_families

from jobs.generate import generate
from tests.oracle import reference_files
from tests.reliability.helpers import small_tmpfs
from tests.jobs.test_watch import daemons, wait_until  # noqa: F401 - the fixture, shared

ROOT = Path(__file__).resolve().parents[2]
FIRST = dt.date(2024, 1, 1)
DAYS = [FIRST + dt.timedelta(days=i) for i in range(40)]


def metrics(path: Path) -> dict[str, list]:
    families = text_string_to_metric_families(path.read_text())
    return {f.name: f.samples for f in families}


def test_daemon_over_40_days_keeps_8_store_days_and_3_output_dates(tmp_path, daemons):
    plain = tmp_path / "plain"  # the oracle's copy
    generate(str(plain), days=40, lines_per_day=400, end=DAYS[-1], corrupt_share=0.01)
    logs = tmp_path / "logs"
    logs.mkdir()
    prom = tmp_path / "metrics" / "mapreduce.prom"
    prom.parent.mkdir()
    w = daemons(tmp_path, "--keep-days", "8", "--keep-outputs", "3", "--metrics-file", str(prom))
    w.wait_idle()
    for batch in range(4):  # dropped ten at a time, as a log shipper would, some compressed
        for d in DAYS[batch * 10:(batch + 1) * 10]:
            name = f"listen-{d:%Y%m%d}.log"
            data = (plain / name).read_bytes()
            if d.day % 5 == 0:
                import gzip
                name, data = name + ".gz", gzip.compress(data)
            tmp = logs / (name + ".tmp")
            tmp.write_bytes(data)
            os.rename(tmp, logs / name)
        last = DAYS[(batch + 1) * 10 - 1]
        wait_until(lambda: (w.out / f"top50_{last:%Y%m%d}.summary.json").exists()
                   and (w.out / f"top50_{last:%Y%m%d}.report.html").exists(),
                   f"the files of {last}", daemon=w, timeout=120)
        wait_until(lambda: f"{last:%Y-%m-%d}" in w.runs()
                   and (w.events() or [{}])[-1].get("event") == "idle", "idle after the batch",
                   daemon=w)
    time.sleep(2.5)  # more than the retry and quiet periods: nothing more may run
    runs_before = w.runs()
    time.sleep(1.5)
    assert w.runs() == runs_before
    newest = DAYS[-3:]
    # never a date older than the 3 newest logs present when it was planned: not day 1 to 2
    assert min(w.runs()) >= f"{DAYS[2]:%Y-%m-%d}"
    stored = sorted(p.name for p in (w.out / "store" / "daily").iterdir()
                    if p.name.startswith("day-"))
    assert stored == [f"day-{d:%Y%m%d}" for d in DAYS[-8:]]
    assert not [p for p in (w.out / "store").rglob("*") if ".tmp-" in p.name]
    files = sorted(p.name for p in w.out.iterdir() if p.is_file())
    assert files == sorted(f"{kind}{d:%Y%m%d}{ext}" for d in newest for kind, ext in
                           [("country_top50_", ".txt"), ("user_top50_", ".txt"),
                            ("top50_", ".summary.json"), ("top50_", ".report.html")])
    for d in newest:
        country, user = reference_files(str(plain), d, 7, 50)
        assert (w.out / f"country_top50_{d:%Y%m%d}.txt").read_text() == country
        assert (w.out / f"user_top50_{d:%Y%m%d}.txt").read_text() == user
    m = metrics(prom)
    assert m["mapreduce_last_run_success"][0].value == 1.0
    assert m["mapreduce_last_success_timestamp_seconds"][0].value > time.time() - 600
    stages = {s.labels["stage"] for s in m["mapreduce_last_run_duration_seconds"]}
    assert {"daily", "window", "merge", "total"} <= stages
    summary = orjson.loads((w.out / f"top50_{newest[-1]:%Y%m%d}.summary.json").read_bytes())
    assert m["mapreduce_last_run_corrupt_lines"][0].value == sum(summary["corrupt_lines"].values())
    assert m["mapreduce_last_run_days_missing"][0].value == 0
    assert m["mapreduce_store_bytes"][0].value > 0 and m["mapreduce_output_bytes"][0].value > 0
    assert m["mapreduce_watch_dates_to_retry"][0].value == 0
    assert oct(prom.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert w.stop() == 0
    again = daemons(tmp_path, "--keep-days", "8", "--keep-outputs", "3", name="again")
    again.wait_idle()  # what retention removed is not computed again after a restart
    assert again.runs() == []
    assert again.stop() == 0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mapreduce.cli", *args], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=300)


def test_top50_keeps_by_default_the_days_of_the_longest_window_in_use(tmp_path):
    end = DAYS[13]
    generate(str(tmp_path / "logs"), days=14, lines_per_day=300, end=end)
    store = tmp_path / "out" / "store" / "daily"
    run = cli("top", "--logs", "logs", "--out", "out", "--days", "10", "--date",
              f"{DAYS[9]:%Y%m%d}", "--quiet", "--executor", "inline", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    run = cli("top50", "--logs", "logs", "--out", "out", "--quiet", "--executor", "inline",
              cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    # a 10-day window was computed on this store: top50's 7 days do not shrink it
    assert len(list(store.glob("day-*"))) == 10
    prom = tmp_path / "m.prom"
    run = cli("top50", "--logs", "logs", "--out", "out", "--quiet", "--executor", "inline",
              "--keep-days", "2", "--metrics-file", str(prom), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    # fewer than the window's own days is the window's days: they are never removed
    assert sorted(p.name for p in store.glob("day-*")) == [f"day-{d:%Y%m%d}" for d in DAYS[7:14]]
    assert metrics(prom)["mapreduce_last_run_lines_read"][0].value == 0  # all cached


def test_too_little_free_space_is_a_one_line_error_before_any_work(tmp_path):
    generate(str(tmp_path / "logs"), days=7, lines_per_day=40000, end=DAYS[6])
    small = tmp_path / "small"
    with small_tmpfs(small, "2m"):
        prom = tmp_path / "m.prom"
        run = cli("top50", "--logs", "logs", "--out", str(small / "out"), "--quiet",
                  "--metrics-file", str(prom), cwd=tmp_path)
        assert run.returncode == 1
        err = run.stderr.strip().splitlines()
        assert len(err) == 1 and "not enough free space" in err[0], err
        assert not list((small / "out" / "store").glob("daily/day-*"))  # nothing was reduced
        assert metrics(prom)["mapreduce_last_run_success"][0].value == 0
        assert metrics(prom)["mapreduce_last_success_timestamp_seconds"][0].value == 0
