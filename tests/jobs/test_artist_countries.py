"""jobs.artist_countries: the listens joined with a song-to-artist file, against a plain-Python
join; the file is part of each cached day's identity."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections import Counter, defaultdict

import orjson

from jobs.artist_countries import ArtistCountries
from jobs.listens import log_name
from mapreduce.windowed import run_window_job
from tests.conftest import DAY, ROOT, temp_names
from tests.jobs.listen_week import MAX, line_count, valid_rows, write_days


def write_artists(path: str, logs: str, end: dt.date, salt: int) -> dict[int, int]:
    """A song-to-artist file for most songs of the logs (every fifth song left out), in no
    particular order; the largest ids included."""
    songs = {song for rows in valid_rows(logs, end, 28).values() for song, _, _ in rows}
    artists = {s: (s * 7 + salt) % 13 + 1 for s in songs if s % 5 != 0}
    artists[MAX] = MAX
    with open(path, "w") as f:
        f.writelines(f"{s},{a}\n" for s, a in sorted(artists.items(), key=lambda kv: -kv[1]))
    return artists


def expected(logs: str, end: dt.date, artists: dict[int, int]) -> tuple[str, dict[str, int]]:
    plays: dict[int, Counter] = defaultdict(Counter)
    unknown = {}
    for day, rows in valid_rows(logs, end, 28).items():
        unknown[f"{day:%Y-%m-%d}"] = sum(song not in artists for song, _, _ in rows)
        for song, _user, country in rows:
            if song in artists:
                plays[artists[song]][country] += 1
    text = "".join(f"{a}|" + ",".join(f"{c}:{n}" for c, n in sorted(
        plays[a].items(), key=lambda kv: (-kv[1], kv[0]))[:10]) + "\n" for a in sorted(plays))
    return text, unknown


def unknown_songs(store, day: dt.date) -> int:
    manifest = orjson.loads((store / "countries" / f"day-{day:%Y%m%d}" / "manifest.json")
                            .read_bytes())
    return manifest["counters"]["unknown_song"]


def test_join_cache_and_a_changed_side_file(tmp_path, backend):
    logs, out, table = tmp_path / "logs", tmp_path / "out", str(tmp_path / "artists.csv")
    before = DAY - dt.timedelta(days=1)
    write_days(str(logs), before, days=4)
    write_days(str(tmp_path / "next"), DAY, days=1, seed=11)
    os.replace(tmp_path / "next" / log_name(DAY), logs / log_name(DAY))
    artists = write_artists(table, str(logs), DAY, salt=0)
    name = f"artist_countries_28days_{DAY:%Y%m%d}.txt"

    first = run_window_job(ArtistCountries(artists=table), str(logs), str(out), backend,
                           partitions=4, split_size=20_000, date=before)
    text, unknown = expected(str(logs), before, artists)
    assert (out / f"artist_countries_28days_{before:%Y%m%d}.txt").read_text() == text
    assert {d: unknown_songs(out / "store", dt.date.fromisoformat(d)) for d in unknown} == unknown
    assert all(n > 0 for n in unknown.values()) and str(MAX) in text
    assert not any(info["cached"] for info in first["days"].values())

    # the next day: only its log is read
    second = run_window_job(ArtistCountries(artists=table), str(logs), str(out), backend,
                            partitions=4)
    assert (out / name).read_text() == expected(str(logs), DAY, artists)[0]
    assert [info["cached"] for info in second["days"].values()] == [True] * 4 + [False]
    assert second["input_lines_read"] == line_count(str(logs / log_name(DAY)))

    # another mapping in the same file: every day is joined again
    artists = write_artists(table, str(logs), DAY, salt=5)
    third = run_window_job(ArtistCountries(artists=table), str(logs), str(out), backend,
                           partitions=4)
    assert (out / name).read_text() == expected(str(logs), DAY, artists)[0]
    assert not any(info["cached"] for info in third["days"].values())
    # and unchanged, none
    fourth = run_window_job(ArtistCountries(artists=table), str(logs), str(out), backend,
                            partitions=4)
    assert all(info["cached"] for info in fourth["days"].values())
    assert temp_names(str(out)) == []


def _cli(folder, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mapreduce", "run",
                           "jobs.artist_countries:ArtistCountries", *args], cwd=folder,
                          env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True,
                          text=True, timeout=180)


def test_from_the_command_line_with_a_relative_side_file(tmp_path):
    logs = tmp_path / "logs"
    write_days(str(logs), DAY, days=2)
    artists = write_artists(str(tmp_path / "artists.csv"), str(logs), DAY, salt=1)
    missing = _cli(tmp_path, "--logs", "logs", "--out", "out")
    assert missing.returncode == 2
    assert missing.stderr.strip() == ("error: --artists must name a file of sng_id,artist_id "
                                      "lines: None")
    absent = _cli(tmp_path, "--logs", "logs", "--out", "out", "--artists", "nowhere.csv")
    assert absent.returncode == 2
    assert absent.stderr.strip().endswith(f"lines: {tmp_path / 'nowhere.csv'}")
    result = _cli(tmp_path, "--logs", "logs", "--out", "out", "--artists", "artists.csv",
                  "--days", "2", "--workers", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "out" / f"artist_countries_2days_{DAY:%Y%m%d}.txt").read_text()
    assert text == expected(str(logs), DAY, artists)[0]
