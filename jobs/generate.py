"""Deterministic synthetic listen logs with realistic skew.

Song popularity is Zipf-like over a catalogue (about 2 million songs at full scale), user activity
is heavy-tailed (Pareto) over 2 to 3 million users, each user listens mostly from a home country,
countries are skewed, and users replay a handful of favourite songs. A share of the lines (0.1 %
by default) is corrupt, in every way the validity rule names. Everything is vectorised, and the
same seed gives the same bytes.

Ids come in three widths (``--id-width``): ``realistic`` (the default) spreads them over 1 to 10
digits with most at 9 and 10, as the service's own ids are, and gives a few users (1.5 %) ids of
11 to 19 digits; ``wide`` makes a third of all ids 16 to 19 digits; ``narrow`` keeps the first
generator's small ids (at most 8 digits at full scale), so its old seeds give the old logs byte for
byte. Widths are drawn independently of popularity, and the ids of each width are distinct values
drawn from a stream seeded apart, so the same seed gives the same listening pattern at every width.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
from dataclasses import dataclass

import numpy as np

from mapreduce.errors import UsageError
from mapreduce.fsutil import atomic_writer
from mapreduce.textcols import Fixed, Int, digit_counts, format_rows
from jobs.listens import COUNTRY_BYTES, ISO_CODES, log_name

CHUNK_LINES = 1_000_000
CORRUPT_KINDS = (
    "blank", "spaces", "extra_field", "missing_field", "sign", "non_ascii", "invalid_utf8", "nul",
    "lower_country", "unassigned_country", "too_many_digits", "over_max", "letters", "empty_field",
    "lone_cr", "tab",
)
ID_WIDTHS = ("narrow", "realistic", "wide")
MAX_ID = 2**63 - 1

#: realistic ids: the share of each digit count 1..10 (most at 9 and 10, as real catalogues and
#: user bases this size are numbered) ...
_REALISTIC = np.array([0.001, 0.002, 0.004, 0.008, 0.015, 0.03, 0.05, 0.09, 0.35, 0.45])
#: ... and for users, a further share spread evenly over 11..19 digits (external-account ids)
_LONG_USERS = 0.015
#: wide ids: this share spread evenly over 16..19 digits, the rest as realistic
_WIDE = 1 / 3


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


def digit_shares(kind: str, id_width: str) -> np.ndarray:
    """The share of ids of each digit count 1..19 (index 0 = 1 digit) for ``kind`` "song" or
    "user" at ``id_width`` "realistic" or "wide"."""
    shares = np.zeros(19)
    shares[:10] = _REALISTIC
    if kind == "user":
        shares *= 1 - _LONG_USERS
        shares[10:19] = _LONG_USERS / 9
    if id_width == "wide":
        shares *= 1 - _WIDE
        shares[15:19] += _WIDE / 4
    return shares / shares.sum()


def spread_ids(count: int, shares: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct ids, their digit counts following ``shares``, in random order: a random
    injective map from population index to id, one width class at a time."""
    per_class = np.floor(shares * count).astype(np.int64)
    # the rounding remainder goes to the most common widths, so each class gets its share
    for d in np.argsort(-shares, kind="stable")[:count - int(per_class.sum())]:
        per_class[d] += 1
    ids = np.empty(count, dtype=np.int64)
    filled = 0
    for d in range(19):
        low = 10 ** d
        high = min(10 ** (d + 1) - 1, MAX_ID)
        take = int(min(per_class[d], high - low + 1))  # 1 to 9 digits hold few ids:
        if d < 18:                                      # the rest go one width up
            per_class[d + 1] += per_class[d] - take
        ids[filled:filled + take] = rng.choice(high - low + 1, size=take, replace=False) + low
        filled += take
    if filled < count:  # only when count exceeds all 19-digit ids: not at any real size
        raise ValueError(f"cannot make {count} distinct ids")
    return rng.permutation(ids)


def make_population(seed: int, users: int, songs: int, id_width: str = "realistic") -> Population:
    if id_width not in ID_WIDTHS:
        raise ValueError(f"id_width must be one of {', '.join(ID_WIDTHS)}, not {id_width!r}")
    rng = np.random.default_rng([seed, 0])
    # The narrow ids come from the main stream, as in the first generator; other widths replace
    # them afterwards from a stream of their own, leaving every other draw the same.
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
    if id_width != "narrow":
        ids_rng = np.random.default_rng([seed, 1, ID_WIDTHS.index(id_width)])
        song_ids = spread_ids(songs, digit_shares("song", id_width), ids_rng)
        user_ids = spread_ids(users, digit_shares("user", id_width), ids_rng)
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
             corrupt_share: float = 0.001, id_width: str = "realistic",
             force: bool = False) -> list[str]:
    """Write ``days`` logs ending on ``end``; returns their paths.

    A log of the same name already in ``out_dir`` is a ``UsageError`` (nothing is written) unless
    ``force``, which replaces it: a folder of real logs must not be overwritten by a slip."""
    users = users or int(min(2_500_000, max(50, lines_per_day // 12)))
    songs = songs or int(min(2_000_000, max(40, lines_per_day // 15)))
    dates = [end - dt.timedelta(days=i) for i in range(days - 1, -1, -1)]
    paths = [os.path.join(out_dir, log_name(day)) for day in dates]
    if not force:  # every name checked before anything is written
        existing = [p for p in paths if os.path.lexists(p)]
        if len(existing) == 1:
            raise UsageError(f"{existing[0]} already exists: pass --force to overwrite it")
        if existing:
            raise UsageError(f"{existing[0]} and {len(existing) - 1} more of the logs to write "
                             "already exist: pass --force to overwrite them")
    pop = make_population(seed, users, songs, id_width)
    os.makedirs(out_dir, exist_ok=True)
    for day, path in zip(dates, paths):
        with atomic_writer(path) as f:
            for chunk in day_lines(pop, seed, day, lines_per_day, corrupt_share):
                f.write(chunk)
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
    parser.add_argument("--id-width", choices=ID_WIDTHS, default="realistic",
                        help="realistic (default): ids of 1-10 digits, most 9-10, and a few "
                        "users' up to 19; wide: a third of ids 16-19 digits; narrow: the first "
                        "generator's ids of at most 8 digits (old seeds give the old logs)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite logs of the same names already in --out")
