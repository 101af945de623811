"""Keyed days (mapreduce.keying) give the from-scratch windows, byte for byte, day after day:
over a run of consecutive dates during which days are keyed against their blocks, with a log
missing and a keyed day's log changed in the middle, and after the block table the keyed days
point into is damaged; retention removes the blocks that start before the days it keeps."""
from __future__ import annotations

import datetime as dt
import os

import orjson

from jobs.generate import generate
from jobs.top50 import KEYS, TopSongs
from mapreduce.windowed import run_window_job
from tests.jobs.test_rollups import FromScratch, _files
from tests.oracle import reference_files


class KeyedBlocks(TopSongs):
    """Blocks of 4 days whose days are keyed once the block ended 2 days before the window's
    end: a 12-day window holds keyed days, whole days and blocks."""

    rollup_levels = (4,)
    row_keys = KEYS
    keyed_after = 2


FIRST_END = dt.date(2024, 3, 12)
RUN = 12
DAYS = 12


def _manifests(store) -> dict[str, dict]:
    folder = store / "daily"
    return {n: orjson.loads((folder / n / "manifest.json").read_bytes())
            for n in sorted(os.listdir(folder)) if n.startswith("day-")}


def test_keyed_windows_equal_from_scratch_ones_day_after_day(tmp_path, backend):
    logs = tmp_path / "logs"
    generate(str(logs), days=DAYS + RUN, lines_per_day=400, end=FIRST_END + dt.timedelta(RUN - 1),
             users=25, songs=30)
    keyed, scratch = tmp_path / "keyed", tmp_path / "scratch"
    missing = FIRST_END - dt.timedelta(days=2)
    changed = FIRST_END      # in the block of 03-11 .. 03-14, keyed from the 5th run on
    seen_keyed = set()
    whole_mtimes: dict[str, int] = {}
    for i in range(RUN):
        end = FIRST_END + dt.timedelta(days=i)
        if i == 5:
            os.unlink(logs / f"listen-{missing:%Y%m%d}.log")
        if i == 7:  # a keyed day's log changes: its block is built again, its days keyed again
            assert "keyed" in _manifests(keyed / "store")[f"day-{changed:%Y%m%d}"]
            with open(logs / f"listen-{changed:%Y%m%d}.log", "ab") as f:
                f.write(b"5|5|FR\n" * 40 + b"7|9|DE\n")
        a = KeyedBlocks(days=DAYS, top=3)
        b = FromScratch(days=DAYS, top=3)
        run_window_job(a, str(logs), str(keyed), backend, date=end, partitions=3)
        run_window_job(b, str(logs), str(scratch), backend, date=end, partitions=3)
        assert _files(keyed, a, end) == _files(scratch, b, end), f"window ending {end}"
        if i in (0, 5, 7, RUN - 1):
            country, user = reference_files(str(logs), end, DAYS, 3)
            assert _files(keyed, a, end) == {"country": country.encode(), "user": user.encode()}
        manifests = _manifests(keyed / "store")
        now = {n for n, m in manifests.items() if "keyed" in m}
        daily = keyed / "store" / "daily"
        for name in now - seen_keyed:  # keyed, not reduced again: the daemon must not see it
            if name in whole_mtimes and name != f"day-{changed:%Y%m%d}":
                assert (daily / name / "manifest.json").stat().st_mtime_ns == whole_mtimes[name]
        whole_mtimes = {n: (daily / n / "manifest.json").stat().st_mtime_ns
                        for n, m in manifests.items() if "keyed" not in m}
        seen_keyed |= now
        folders = {n for n in os.listdir(keyed / "store" / "daily") if n.startswith("keys")}
        assert folders == {m["keyed"]["folder"] for m in manifests.values() if "keyed" in m}
        # retention keeps the window's days, and no block that starts before them
        oldest = min(manifests)[4:]
        blocks = [n for n in os.listdir(keyed / "store" / "daily") if n.startswith("rollup")]
        assert blocks and all(n.split("-")[1] >= oldest for n in blocks)
    assert len(seen_keyed) >= 8


def test_a_damaged_block_table_under_keyed_days_is_recovered_from_the_logs(tmp_path, backend,
                                                                            caplog):
    logs = tmp_path / "logs"
    end = FIRST_END + dt.timedelta(days=3)
    generate(str(logs), days=DAYS + 4, lines_per_day=300, end=end, users=20, songs=25)
    out = tmp_path / "out"
    job = KeyedBlocks(days=DAYS, top=3)
    for d in (end - dt.timedelta(days=1), end):
        run_window_job(job, str(logs), str(out), backend, date=d, partitions=2)
    daily = out / "store" / "daily"
    keyed = {n: m["keyed"]["folder"] for n, m in _manifests(out / "store").items() if "keyed" in m}
    assert keyed
    for folder in set(keyed.values()):
        for name in os.listdir(daily / folder):
            if name.endswith(".tbl"):
                path = daily / folder / name
                data = bytearray(path.read_bytes())
                data[len(data) // 3] ^= 0xFF   # the same bytes as the block's (hard links)
                path.write_bytes(bytes(data))
    run_window_job(job, str(logs), str(out), backend, date=end, partitions=2)
    country, user = reference_files(str(logs), end, DAYS, 3)
    assert _files(out, job, end) == {"country": country.encode(), "user": user.encode()}
    assert any("keyed against it again" in r.getMessage() for r in caplog.records)
    folders = {n for n in os.listdir(daily) if n.startswith("keys")}
    assert folders == {m["keyed"]["folder"] for m in _manifests(out / "store").values()
                       if "keyed" in m}
