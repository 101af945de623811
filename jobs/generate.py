"""Deterministic synthetic listen logs with realistic skew.

Song popularity is Zipf-like over a catalogue (about 2 million songs at full scale), user activity
is heavy-tailed (Pareto) over 2 to 3 million users, each user listens mostly from a home country,
countries are skewed, and users replay a handful of favourite songs. A share of the lines (0.1 %
by default) is corrupt, in every way the validity rule names. Everything is vectorised, and the
same seed gives the same bytes.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
from dataclasses import dataclass

import numpy as np

from mapreduce.fsutil import atomic_writer
from mapreduce.textcols import Fixed, Int, digit_counts, format_rows
from jobs.listens import COUNTRY_BYTES, ISO_CODES, log_name

CHUNK_LINES = 1_000_000
CORRUPT_KINDS = (
    "blank", "spaces", "extra_field", "missing_field", "sign", "non_ascii", "invalid_utf8", "nul",
    "lower_country", "unassigned_country", "too_many_digits", "over_max", "letters", "empty_field",
    "lone_cr", "tab",
)


@dataclass(frozen=True)
class Population:
    songs: np.ndarray          # song id by popularity rank
    song_cdf: np.ndarray
    users: np.ndarray          # user ids
    user_cdf: np.ndarray       # activity
    home: np.ndarray           # home country index per user
    country_cdf: np.ndarray
    favourites: np.ndarray     # (users, 8) favourite song ranks


def _cdf(weights: np.ndarray) -> np.ndarray:
    c = np.cumsum(weights, dtype=np.float64)
    return c / c[-1]


def _draw(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)


def make_population(seed: int, users: int, songs: int) -> Population:
    rng = np.random.default_rng([seed, 0])
    song_ids = rng.choice(songs * 10, size=songs, replace=False).astype(np.int64) + 1
    song_cdf = _cdf(1.0 / (np.arange(songs) + 20.0) ** 0.9)
    user_ids = rng.choice(users * 20, size=users, replace=False).astype(np.int64) + 1
    user_cdf = _cdf(rng.pareto(1.3, size=users) + 0.05)
    country_order = rng.permutation(len(ISO_CODES))
    country_weights = np.empty(len(ISO_CODES))
    country_weights[country_order] = 1.0 / (np.arange(len(ISO_CODES)) + 1.0) ** 1.3
    country_cdf = _cdf(country_weights)
    home = _draw(country_cdf, rng.random(users))
    favourites = _draw(song_cdf, rng.random((users, 8)))
    return Population(song_ids, song_cdf, user_ids, user_cdf, home, country_cdf, favourites)


def _corrupt_line(kind: str, song: int, user: int, country: str, rng: np.random.Generator) -> bytes:
    good = f"{song}|{user}|{country}"
    return {
        "blank": b"",
        "spaces": f"{song} |{user}|{country}".encode(),
        "extra_field": f"{good}|{song}".encode(),
        "missing_field": f"{song}|{user}".encode(),
        "sign": f"+{song}|-{user}|{country}".encode(),
        "non_ascii": f"{song}|{user}|{country}é".encode(),
        "invalid_utf8": f"{song}|{user}|".encode() + b"\xff\xfe",
        "nul": f"{song}|{user}\x00|{country}".encode(),
        "lower_country": f"{song}|{user}|{country.lower()}".encode(),
        "unassigned_country": f"{song}|{user}|{rng.choice(['UK', 'ZZ', 'XK', 'EU'])}".encode(),
        "too_many_digits": f"{song:020d}|{user}|{country}".encode(),
        "over_max": f"9223372036854775808|{user}|{country}".encode(),
        "letters": f"{song}a|{user}|{country}".encode(),
        "empty_field": f"|{user}|{country}".encode(),
        "lone_cr": f"{song}|{user}\r|{country}".encode(),
        "tab": f"{song}\t{user}\t{country}".encode(),
    }[kind]


def day_lines(pop: Population, seed: int, day: dt.date, lines: int, corrupt_share: float,
              replay_share: float = 0.35, away_share: float = 0.05):
    """Yield the day's text in chunks of whole lines."""
    rng = np.random.default_rng([seed, day.toordinal()])
    done = 0
    while done < lines:
        n = min(CHUNK_LINES, lines - done)
        who = _draw(pop.user_cdf, rng.random(n))
        rank = _draw(pop.song_cdf, rng.random(n))
        replay = rng.random(n) < replay_share
        rank[replay] = pop.favourites[who[replay], rng.integers(0, 8, int(replay.sum()))]
        country = pop.home[who]
        away = rng.random(n) < away_share
        country[away] = _draw(pop.country_cdf, rng.random(int(away.sum())))
        song, user = pop.songs[rank], pop.users[who]
        text = format_rows([Int(song), b"|", Int(user), b"|", Fixed(COUNTRY_BYTES[country]), b"\n"], n)
        bad = np.flatnonzero(rng.random(n) < corrupt_share)
        if len(bad):
            ends = np.cumsum(digit_counts(song) + digit_counts(user) + 5)
            pieces, pos = [], 0
            for i in bad:
                start = int(ends[i - 1]) if i else 0
                pieces.append(text[pos:start])
                kind = CORRUPT_KINDS[int(rng.integers(len(CORRUPT_KINDS)))]
                pieces.append(_corrupt_line(kind, int(song[i]), int(user[i]),
                                            ISO_CODES[country[i]], rng) + b"\n")
                pos = int(ends[i])
            pieces.append(text[pos:])
            text = b"".join(pieces)
        yield text
        done += n


def generate(out_dir: str, *, days: int, lines_per_day: int, end: dt.date, seed: int = 42,
             users: int | None = None, songs: int | None = None,
             corrupt_share: float = 0.001) -> list[str]:
    """Write ``days`` logs ending on ``end``; returns their paths. Existing files are replaced."""
    users = users or int(min(2_500_000, max(50, lines_per_day // 12)))
    songs = songs or int(min(2_000_000, max(40, lines_per_day // 15)))
    pop = make_population(seed, users, songs)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for i in range(days - 1, -1, -1):
        day = end - dt.timedelta(days=i)
        path = os.path.join(out_dir, log_name(day))
        with atomic_writer(path) as f:
            for chunk in day_lines(pop, seed, day, lines_per_day, corrupt_share):
                f.write(chunk)
        paths.append(path)
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder to write listen-YYYYMMDD.log files to")
    parser.add_argument("--days", type=int, default=7, help="number of days (default 7)")
    parser.add_argument("--lines-per-day", type=int, default=100_000,
                        help="lines per log (default 100000; the real service: 30000000)")
    parser.add_argument("--end", default=None, help="last day, YYYYMMDD (default 20240107)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--corrupt-share", type=float, default=0.001,
                        help="share of corrupt lines (default 0.001)")
    parser.add_argument("--users", type=int, default=None, help="distinct users (default: scaled)")
    parser.add_argument("--songs", type=int, default=None, help="catalogue size (default: scaled)")
