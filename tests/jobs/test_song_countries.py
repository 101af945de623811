"""jobs.song_countries against a plain-Python count of each song's countries."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections import Counter, defaultdict

import pytest

from jobs.listens import log_name
from jobs.song_countries import SongCountries
from mapreduce.windowed import run_window_job
from tests.conftest import DAY, ROOT, temp_names
from tests.jobs.listen_week import line_count, valid_rows, write_days


def expected(logs: str, end: dt.date, days: int, top: int = 10) -> str:
    plays: dict[int, Counter] = defaultdict(Counter)
    for rows in valid_rows(logs, end, days).values():
        for song, _user, country in rows:
            plays[song][country] += 1
    lines = []
    for song in sorted(plays):  # integers as integers
        ranked = sorted(plays[song].items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        lines.append(f"{song}|" + ",".join(f"{c}:{n}" for c, n in ranked) + "\n")
    return "".join(lines)


def output(out, end: dt.date, days: int = 28) -> str:
    return (out / f"song_top_countries_{days}days_{end:%Y%m%d}.txt").read_text()


def test_window_then_next_day_reads_only_the_new_log(tmp_path, backend):
    logs, out = tmp_path / "logs", tmp_path / "out"
    before = DAY - dt.timedelta(days=1)
    write_days(str(logs), before, days=5)
    first = run_window_job(SongCountries(), str(logs), str(out), backend, partitions=4,
                           split_size=20_000)
    text = output(out, before)
    assert text == expected(str(logs), before, 28)
    assert len(first["days_missing"]) == 23 and len(first["days_used"]) == 5
    # several countries on a line, and ties broken by the code
    assert max(line.count(",") for line in text.splitlines()) == 9

    write_days(str(tmp_path / "next"), DAY, days=1, seed=9)
    os.replace(tmp_path / "next" / log_name(DAY), logs / log_name(DAY))
    second = run_window_job(SongCountries(), str(logs), str(out), backend, partitions=4)
    assert output(out, DAY) == expected(str(logs), DAY, 28)
    new = second["days"].pop(f"{DAY:%Y-%m-%d}")
    assert not new["cached"] and new["lines_read"] == line_count(str(logs / log_name(DAY)))
    assert len(second["days"]) == 5
    assert all(info["cached"] and info["lines_read"] == 0 for info in second["days"].values())
    assert temp_names(str(out)) == []


@pytest.mark.parametrize("top", [1, 3])
def test_other_window_and_top(tmp_path, backend, top):
    logs, out = tmp_path / "logs", tmp_path / "out"
    write_days(str(logs), DAY, days=3)
    run_window_job(SongCountries(days=2, top=top), str(logs), str(out), backend, partitions=2,
                   split_size=9_000)
    assert output(out, DAY, 2) == expected(str(logs), DAY, 2, top)


def test_from_the_command_line(tmp_path):
    logs, out = tmp_path / "logs", tmp_path / "out"
    write_days(str(logs), DAY, days=2)
    result = subprocess.run(
        [sys.executable, "-m", "mapreduce", "run", "jobs.song_countries:SongCountries",
         "--logs", str(logs), "--out", str(out), "--top", "4", "--workers", "2", "--quiet"],
        env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert output(out, DAY) == expected(str(logs), DAY, 28, 4)
    lines = output(out, DAY).splitlines()
    songs = [int(line.split("|")[0]) for line in lines]
    assert songs == sorted(songs) and songs[-1] == 2**63 - 1  # integer order, the largest id
