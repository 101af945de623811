"""Listen logs for the job tests, and the valid rows of a window read the plain way.

Generated days (seeded, with corrupt lines of every kind the generator knows), each followed by
hand-made lines: every corruption of the validity rule, and valid lines at its edges (ids of 19
digits at the maximum, leading zeros, one trailing ``\\r``), the last without a final newline.
"""
from __future__ import annotations

import datetime as dt
import os

from jobs.generate import CORRUPT_KINDS, generate
from jobs.listens import log_name
from tests.oracle import parse_line, split_lines

MAX = 2**63 - 1
CORRUPT = [
    b"", b"   ", b"1|2|FR|3", b"1|2", b"+1|2|FR", b"1|-2|FR", "1|2|FR\u00e9".encode(),
    b"1|2|\xff\xfe", b"1|2\x00|FR", b"1|2|fr", b"1|2|UK", b"1|2|ZZ", b"12345678901234567890|2|FR",
    b"9223372036854775808|2|FR", b"1|9223372036854775808|FR", b"1a|2|FR", b"|2|FR", b"1||FR",
    b"1|2|", b"1|2\r|FR", b"1\t2\tFR", b"1|2|FR\r\r", b"\xef\xbb\xbf1|2|FR", "\u0661|2|FR".encode(),
    b" 1|2|FR", b"1|2|FR ", b"1|2|F", b"1|2|FRA",
]
VALID_EDGES = [f"{MAX}|{MAX}|ZW".encode(), b"007|000|AD", b"5|6|FR\r", f"{MAX}|1|FR".encode(),
               f"5|{MAX}|AD".encode()]


def write_days(folder: str, end: dt.date, days: int, lines_per_day: int = 3000,
               seed: int = 7) -> list[str]:
    """``days`` logs ending on ``end``: generated (5 % corrupt), then the hand-made lines."""
    assert len(CORRUPT_KINDS) >= 16  # the generator's kinds, mixed in at random
    paths = generate(folder, days=days, lines_per_day=lines_per_day, end=end, seed=seed,
                     corrupt_share=0.05)
    for i, path in enumerate(paths):
        with open(path, "ab") as f:
            # rotate, so the edge lines fall on different days in different places
            extra = (CORRUPT + VALID_EDGES)[i:] + (CORRUPT + VALID_EDGES)[:i]
            f.write(b"\n".join(extra))  # the last line has no final newline
    return paths


def valid_rows(folder: str, end: dt.date, days: int) -> dict[dt.date, list[tuple[int, int, str]]]:
    """(song, user, country) of every valid line, per day present in the window."""
    rows = {}
    for i in range(days):
        day = end - dt.timedelta(days=i)
        path = os.path.join(folder, log_name(day))
        if os.path.exists(path):
            with open(path, "rb") as f:
                rows[day] = [r for r in map(parse_line, split_lines(f.read())) if r]
    return rows


def line_count(path: str) -> int:
    with open(path, "rb") as f:
        return len(split_lines(f.read()))
