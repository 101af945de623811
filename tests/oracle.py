"""A direct, obviously-correct computation of the top-K files, for tests to compare against.

Written from the rule in the docs with plain Python (regex, Counter, sorted), sharing no code with
the engine but the list of ISO codes.
"""
from __future__ import annotations

import datetime as dt
import os
import re
from collections import Counter, defaultdict

from jobs.listens import ISO_CODES

_VALID = re.compile(rb"([0-9]{1,19})\|([0-9]{1,19})\|([A-Z]{2})")
_CODES = {c.encode() for c in ISO_CODES}


def parse_line(raw: bytes) -> tuple[int, int, str] | None:
    line = raw[:-1] if raw.endswith(b"\r") else raw
    m = _VALID.fullmatch(line)
    if not m or m.group(3) not in _CODES:
        return None
    song, user = int(m.group(1)), int(m.group(2))
    if song > 2**63 - 1 or user > 2**63 - 1:
        return None
    return song, user, m.group(3).decode()


def split_lines(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    if data.endswith(b"\n") or not data:
        lines.pop()
    return lines


def reference_files(logs: str, end: dt.date, days: int, top: int) -> tuple[str, str]:
    """(country file text, user file text) for the window of ``days`` ending on ``end``."""
    by_country: dict[str, Counter] = defaultdict(Counter)
    by_user: dict[int, Counter] = defaultdict(Counter)
    for i in range(days):
        path = os.path.join(logs, f"listen-{end - dt.timedelta(days=i):%Y%m%d}.log")
        if not os.path.exists(path):
            continue
        with open(path, "rb") as f:
            for raw in split_lines(f.read()):
                parsed = parse_line(raw)
                if parsed:
                    song, user, country = parsed
                    by_country[country][song] += 1
                    by_user[user][song] += 1

    def render(groups: dict) -> str:
        out = []
        for key in sorted(groups):
            ranked = sorted(groups[key].items(), key=lambda kv: (-kv[1], kv[0]))[:top]
            out.append(f"{key}|" + ",".join(f"{s}:{n}" for s, n in ranked) + "\n")
        return "".join(out)

    return render(by_country), render(by_user)
