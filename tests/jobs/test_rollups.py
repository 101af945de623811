"""Rolled-up windows are the from-scratch windows, byte for byte, day after day: over a run of
consecutive dates, with a log missing in the middle and a log changed under rollups already
built on it (every rollup holding that day is built again)."""
from __future__ import annotations

import datetime as dt
import os

import orjson

from jobs.generate import generate
from jobs.top50 import TopSongs
from mapreduce.rollup import Span, cover
from mapreduce.windowed import run_window_job
from tests.oracle import reference_files


class SmallBlocks(TopSongs):
    """Blocks of 2 and 4 days, so that a 10-day window uses both levels and shifts over them."""

    rollup_levels = (2, 4)


class FromScratch(TopSongs):
    rollups = False


FIRST_END = dt.date(2024, 3, 10)
RUN = 14          # consecutive end dates
DAYS = 10         # window length


def _files(out, job, end: dt.date) -> dict[str, bytes]:
    names = job.output_names(end)
    return {c: (out / names[c]).read_bytes() for c in ("country", "user")}


def _rollups(store) -> dict[str, dict]:
    folder = store / "daily"
    return {n: orjson.loads((folder / n / "manifest.json").read_bytes())
            for n in sorted(os.listdir(folder)) if n.startswith("rollup")}


def test_rolled_up_windows_equal_from_scratch_ones_day_after_day(tmp_path, backend):
    logs = tmp_path / "logs"
    generate(str(logs), days=DAYS + RUN, lines_per_day=400, end=FIRST_END + dt.timedelta(RUN - 1),
             users=25, songs=30)
    rolled, scratch = tmp_path / "rolled", tmp_path / "scratch"
    missing = FIRST_END - dt.timedelta(days=3)
    changed = FIRST_END - dt.timedelta(days=6)
    for i in range(RUN):
        end = FIRST_END + dt.timedelta(days=i)
        if i == 4:
            os.unlink(logs / f"listen-{missing:%Y%m%d}.log")
        if i == 8:
            with open(logs / f"listen-{changed:%Y%m%d}.log", "ab") as f:
                f.write(b"5|5|FR\n" * 40 + b"7|9|DE\n")
        a = SmallBlocks(days=DAYS, top=3)
        b = FromScratch(days=DAYS, top=3)
        run_window_job(a, str(logs), str(rolled), backend, date=end, partitions=3)
        run_window_job(b, str(logs), str(scratch), backend, date=end, partitions=3)
        assert _files(rolled, a, end) == _files(scratch, b, end), f"window ending {end}"
        if i in (0, 4, 8, RUN - 1):
            country, user = reference_files(str(logs), end, DAYS, 3)
            assert _files(rolled, a, end) == {"country": country.encode(), "user": user.encode()}

        built = _rollups(rolled / "store")
        used = [s for s in cover(end - dt.timedelta(days=DAYS - 1), end, (2, 4)) if s.level > 1]
        assert used and all(f"rollup{s.level}-{s.first:%Y%m%d}" in built for s in used)
        day_checksums = {
            f"{d:%Y-%m-%d}": orjson.loads((rolled / "store" / "daily" / f"day-{d:%Y%m%d}" /
                                           "manifest.json").read_bytes())["checksum"]
            for s in used for d in s.days if (logs / f"listen-{d:%Y%m%d}.log").exists()}
        for s in used:  # what the window used was built from the days as they are now
            members = built[f"rollup{s.level}-{s.first:%Y%m%d}"]["members"]
            assert members == {k: v for k, v in day_checksums.items()
                               if dt.date.fromisoformat(k) in s.days}
    assert not any(n.startswith("rollup") for n in os.listdir(scratch / "store" / "daily"))


def test_cover_takes_the_largest_aligned_blocks():
    first = dt.date.fromordinal(64 * 11000 - 3)
    spans = cover(first, first + dt.timedelta(days=364), (8, 64))
    assert sum(s.level for s in spans) == 365
    assert [s.level for s in spans[:5]] == [1, 1, 1, 64, 64]
    assert all(s.first.toordinal() % s.level == 0 for s in spans)
    assert max(s.level for s in spans) == 64 and len(spans) < 30
    assert Span(64, dt.date.fromordinal(64 * 11000)).parts((8, 64))[1] == Span(
        8, dt.date.fromordinal(64 * 11000 + 8))
