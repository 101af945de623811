"""The listen log: file names and the line format, parsed in bulk (every listen job reads it so).

A line is ``sng_id|user_id|country``. It is valid when, after removing its ``\\n`` and one trailing
``\\r``, it has exactly three ``|``-separated fields, ``sng_id`` and ``user_id`` are 1 to 19 ASCII
digits worth at most 2**63-1, and ``country`` is one of the 249 assigned ISO 3166-1 alpha-2 codes.
Anything else is corrupt: counted, sampled (byte offset and text) and otherwise ignored.

Parsing is vectorised over a whole block of lines: newline and ``|`` positions come from numpy
scans; each id's last eight bytes are read as one uint64 and validated and converted eight digits
at a time with SWAR arithmetic (ids of 9 to 19 digits, rare, take one or two more words), so the
cost per line is a few dozen machine operations, not a Python call.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from mapreduce.codec import narrowest
from mapreduce.inputs import DatedInputs

ISO_CODES: tuple[str, ...] = tuple("""
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT
BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH
ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT
HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS
LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI
NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG
SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG
UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
""".split())
assert len(ISO_CODES) == 249 and list(ISO_CODES) == sorted(ISO_CODES)

#: two code bytes (first * 256 + second) -> index in ISO_CODES, -1 when not an assigned code.
#: Indices follow alphabetical order, so sorting by index sorts by code.
COUNTRY_INDEX = np.full(65536, -1, dtype=np.int16)
for _i, _code in enumerate(ISO_CODES):
    COUNTRY_INDEX[ord(_code[0]) * 256 + ord(_code[1])] = _i
COUNTRY_BYTES = np.frombuffer("".join(ISO_CODES).encode(), dtype=np.uint8).reshape(-1, 2)

MAX_ID = 2**63 - 1
MAX_DIGITS = 19
SAMPLE_CHARS = 200
#: one log a day, named by its date
LISTEN_LOGS = DatedInputs("listen-{date}.log")


def log_date(name: str) -> dt.date | None:
    """The date of a ``listen-YYYYMMDD.log`` name with a real calendar date, else None."""
    return LISTEN_LOGS.date_of(name)


def log_name(day: dt.date) -> str:
    return LISTEN_LOGS.name_of(day)


_PAD = 24  # bytes of '0' before the block, so every 8-byte window of a field start is in range
_ZEROS = np.uint64(0x3030303030303030)
_HIGH_NIBBLES = np.uint64(0xF0F0F0F0F0F0F0F0)
_SIX = np.uint64(0x0606060606060606)
_LOW_BYTES_MASK = np.uint64(0x000000FF000000FF)
_MUL1 = np.uint64(100 + (1000000 << 32))
_MUL2 = np.uint64(1 + (10000 << 32))


def _eight_digits(windows: np.ndarray, used: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse 8-byte windows (uint64, first character in the lowest byte) of which the last
    ``used`` bytes (0..8) are the field's; returns ``(values, all_used_bytes_are_digits)``.

    SWAR: the unused leading bytes are set to '0', then the eight digits combine in three
    multiply-and-shift steps (the simdjson "eight digits" technique), vectorised over rows.
    """
    u64 = np.uint64
    shift = ((8 - used) * 8).astype(np.uint64)
    fill = np.where(used == 0, ~u64(0), (u64(1) << np.minimum(shift, u64(63))) - u64(1))
    x = (windows & ~fill) | (_ZEROS & fill)
    ok = ((x & _HIGH_NIBBLES) == _ZEROS) & (((x + _SIX) & _HIGH_NIBBLES) == _ZEROS)
    with np.errstate(over="ignore"):
        x -= _ZEROS
        x = x * u64(10) + (x >> u64(8))
        x = (((x & _LOW_BYTES_MASK) * _MUL1) + (((x >> u64(16)) & _LOW_BYTES_MASK) * _MUL2)) >> u64(32)
    return x, ok


def _parse_ids(windows: np.ndarray, end: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fields of 1..19 bytes ending before ``end`` (offsets into the padded block) as integers;
    returns ``(values, ok)``. ``windows`` is the block's 8-byte sliding-window view."""
    values, ok = _eight_digits(_window_words(windows, end - 8), np.minimum(length, 8))
    long_rows = np.flatnonzero(length > 8)  # ids of 9 to 19 digits: rare, done apart
    if len(long_rows):
        end, length = end[long_rows], length[long_rows]
        extra = np.zeros(len(long_rows), dtype=np.uint64)
        for chunk in (1, 2):  # digits 9-16, then 17-19, counted from the right
            more, more_ok = _eight_digits(_window_words(windows, end - 8 * (chunk + 1)),
                                          np.clip(length - 8 * chunk, 0, 8))
            ok[long_rows] &= more_ok
            with np.errstate(over="ignore"):  # 19 digits fit in uint64; checked below
                extra += more * np.uint64(10 ** (8 * chunk))
        values[long_rows] += extra
    ok &= values <= np.uint64(MAX_ID)
    return values.astype(np.int64), ok


def _window_words(windows: np.ndarray, start: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(windows[start]).view("<u8").ravel()


def parse_block(block: bytes, offset: int = 0, max_samples: int = 0) -> dict[str, Any]:
    """Parse whole lines; returns songs, users, countries (indices) of the valid lines, in order,
    the number of lines and corrupt lines, and up to ``max_samples`` corrupt-line samples."""
    a = np.frombuffer(block, dtype=np.uint8)
    padded = np.empty(len(a) + _PAD, dtype=np.uint8)
    padded[:_PAD] = 48
    padded[_PAD:] = a
    windows = np.lib.stride_tricks.sliding_window_view(padded, 8)
    newlines = np.flatnonzero(a == 10)
    ends = newlines if (len(a) == 0 or a[-1] == 10) else np.append(newlines, len(a))
    n = len(ends)
    starts = np.empty(n, dtype=np.int64)
    if n:
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    stops = ends - ((ends > starts) & (a[np.maximum(ends - 1, 0)] == 13))  # one trailing \r
    pipes = np.flatnonzero(a == 124)
    per_line = np.bincount(np.searchsorted(ends, pipes), minlength=n)[:n]
    cand = np.flatnonzero(per_line == 2)
    first = (np.cumsum(per_line) - per_line)[cand]
    p1, p2 = pipes[first], pipes[first + 1]
    s, e = starts[cand], stops[cand]
    len1, len2 = p1 - s, p2 - p1 - 1
    shape_ok = ((len1 >= 1) & (len1 <= MAX_DIGITS) & (len2 >= 1) & (len2 <= MAX_DIGITS)
                & (e - p2 - 1 == 2))
    cand, p1, p2, len1, len2 = (x[shape_ok] for x in (cand, p1, p2, len1, len2))
    country = COUNTRY_INDEX[(a[p2 + 1].astype(np.int64) << 8) | a[p2 + 2]]
    songs, ok_song = _parse_ids(windows, p1 + _PAD, len1)
    users, ok_user = _parse_ids(windows, p2 + _PAD, len2)
    ok = ok_song & ok_user & (country >= 0)
    valid = cand[ok]
    result: dict[str, Any] = {
        # narrow types: a map task holds millions of these until it spills
        "song": narrowest(songs[ok]), "user": narrowest(users[ok]),
        "country": country[ok].astype(np.uint8),
        "lines": n, "corrupt": n - len(valid), "samples": [],
    }
    if max_samples and result["corrupt"]:
        bad = np.ones(n, dtype=bool)
        bad[valid] = False
        for i in np.flatnonzero(bad)[:max_samples]:
            text = block[starts[i]:stops[i]][: SAMPLE_CHARS].decode("utf-8", "backslashreplace")
            result["samples"].append({"offset": offset + int(starts[i]), "line": text})
    return result
