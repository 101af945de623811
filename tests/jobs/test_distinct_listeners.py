"""jobs.distinct_listeners against a plain-Python count of distinct users per country."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections import defaultdict

import orjson

from jobs.distinct_listeners import DistinctListeners
from jobs.listens import log_name
from mapreduce.windowed import run_window_job
from tests.conftest import DAY, ROOT, temp_names
from tests.jobs.listen_week import line_count, valid_rows, write_days


def expected(logs: str, end: dt.date, days: int) -> str:
    users = defaultdict(set)
    for rows in valid_rows(logs, end, days).values():
        for _song, user, country in rows:
            users[country].add(user)
    return "".join(f"{c}|{len(users[c])}\n" for c in sorted(users))


def output(out, end: dt.date, days: int) -> str:
    return (out / f"country_distinct_listeners_{days}days_{end:%Y%m%d}.txt").read_text()


def _total(text: str) -> int:
    return sum(int(line.split("|")[1]) for line in text.splitlines())


def test_window_then_next_day_reads_only_the_new_log(tmp_path, backend):
    logs, out = tmp_path / "logs", tmp_path / "out"
    before = DAY - dt.timedelta(days=1)
    write_days(str(logs), before, days=8)
    first = run_window_job(DistinctListeners(), str(logs), str(out), backend, partitions=4,
                           split_size=20_000)
    assert output(out, before, 7) == expected(str(logs), before, 7)
    assert not any(info["cached"] for info in first["days"].values())
    # a union, not a sum: returning users make the window smaller than the days added up
    daily = sum(_total(expected(str(logs), before - dt.timedelta(days=d), 1)) for d in range(7))
    assert _total(output(out, before, 7)) < daily

    write_days(str(tmp_path / "next"), DAY, days=1, seed=8)
    os.replace(tmp_path / "next" / log_name(DAY), logs / log_name(DAY))
    second = run_window_job(DistinctListeners(), str(logs), str(out), backend, partitions=4)
    assert output(out, DAY, 7) == expected(str(logs), DAY, 7)
    new = second["days"].pop(f"{DAY:%Y-%m-%d}")
    assert not new["cached"] and new["lines_read"] == line_count(str(logs / log_name(DAY)))
    assert len(second["days"]) == 6
    assert all(info["cached"] and info["lines_read"] == 0 for info in second["days"].values())
    assert second["input_lines_read"] == new["lines_read"]
    assert temp_names(str(out)) == []


def test_the_day_alone_is_days_1(tmp_path, backend):
    logs, out = tmp_path / "logs", tmp_path / "out"
    write_days(str(logs), DAY, days=2)
    summary = run_window_job(DistinctListeners(days=1), str(logs), str(out), backend,
                             partitions=3, split_size=7_000)
    assert output(out, DAY, 1) == expected(str(logs), DAY, 1)
    assert summary["days_used"] == [f"{DAY:%Y-%m-%d}"]
    assert summary["corrupt_lines"][f"{DAY:%Y-%m-%d}"] == (
        line_count(str(logs / log_name(DAY))) - len(valid_rows(str(logs), DAY, 1)[DAY]))


def test_from_the_command_line(tmp_path):
    logs, out = tmp_path / "logs", tmp_path / "out"
    write_days(str(logs), DAY, days=3)
    result = subprocess.run(
        [sys.executable, "-m", "mapreduce", "run", "jobs.distinct_listeners:DistinctListeners",
         "--logs", str(logs), "--out", str(out), "--date", f"{DAY:%Y%m%d}", "--days", "2",
         "--workers", "2", "--quiet"], env={**os.environ, "PYTHONPATH": ROOT},
        capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert output(out, DAY, 2) == expected(str(logs), DAY, 2)
    name = f"distinct_listeners_2days_{DAY:%Y%m%d}.summary.json"
    summary = orjson.loads((out / name).read_bytes())
    assert summary["params"] == {"days": 2}
