"""The benchmark's long-window case: a store of many days built straight from the generator's
model (no logs to write and parse), then the window stage of the yearly top 10 timed over it.

    DIR/long/R/logs/   one placeholder log per day (a few bytes: the store's days name them)
    DIR/long/R/store/  daily/day-YYYYMMDD/ tables of R lines a day drawn from jobs.generate's
                       model (the same population and draws, without the corrupt lines)

For each window length N (at one rate) and each rate (at one length), in a process of its own,
with the peak memory of its process tree:

    scratch   the window from the days alone (a TopSongs class without rollups)
    first     the window ending the day before, rollups built as needed
    next day  the window ending on the last day, with the rollups there: a day's update

Every rate and length ends on the same date, so the rollups' alignment is the same.
"""
from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
import shutil
from typing import Any

import numpy as np
import orjson

from jobs.top50 import TopSongs

END = dt.date(2024, 12, 30)
FULL_RATE_PARTITIONS = 64   # what the daily job's store has at full scale


def partitions_for(lines: int) -> int:
    """Partitions of a long store of ``lines`` a day: 64 from 8 million lines up, as the daily
    job's store; 8 below, so that a small rate's tables are not a few thousand rows each (at
    1 million lines, R/8 rows a table is near what 64 partitions hold at 30 million)."""
    return FULL_RATE_PARTITIONS if lines >= 8_000_000 else 8


class NoRollups(TopSongs):
    """The top K from the days alone, for the from-scratch figure (the same sum, no blocks)."""

    rollup_levels = ()


class LongTopSongs(TopSongs):
    """The yearly job as it runs, but keying every day it may in its first run (the job keys
    8 a run, spreading a block's keying over 8 runs): the next day then runs over the store
    as it is once a year's days are keyed, and the store's bytes are measured so."""

    keyed_per_run = 10**6


def day_listens(pop: Any, seed: int, day: dt.date, lines: int) -> tuple[np.ndarray, ...]:
    """(song, user, country index) of a day's valid listens, drawn as jobs.generate draws them
    (its chunked loop, without turning them into text)."""
    from jobs.generate import CHUNK_LINES, _draw

    rng = np.random.default_rng([seed, day.toordinal()])
    parts = []
    done = 0
    while done < lines:
        n = min(CHUNK_LINES, lines - done)
        who = _draw(pop.user_cdf, rng.random(n))
        rank = _draw(pop.song_cdf, rng.random(n))
        replay = rng.random(n) < 0.35
        rank[replay] = pop.favourites[who[replay], rng.integers(0, 8, int(replay.sum()))]
        country = pop.home[who]
        away = rng.random(n) < 0.05
        country[away] = _draw(pop.country_cdf, rng.random(int(away.sum())))
        parts.append((pop.songs[rank], pop.users[who], country))
        done += n
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))


def _build_day(root: str, lines: int, day: dt.date, seed: int) -> tuple[int, int]:
    """Write one day's tables and manifest, as Store.reduce would; returns (rows, bytes)."""
    from mapreduce import codec
    from mapreduce.aggregate import sum_by_key
    from mapreduce.partition import partition_ints
    from mapreduce.store import STORE_FORMAT, Store, _manifest_checksum, source_identity
    from jobs.generate import make_population
    from jobs.listens import log_name

    pop = make_population(seed, int(min(2_500_000, max(50, lines // 12))),
                          int(min(2_000_000, max(40, lines // 15))))
    song, user, country = day_listens(pop, seed, day, lines)
    log = os.path.join(root, "logs", log_name(day))
    with open(log, "wb") as f:  # the placeholder the day's manifest names
        f.write(f"{day:%Y%m%d}|1|FR\n".encode())
    partitions = partitions_for(lines)
    store = Store(os.path.join(root, "store"), partitions, step="daily")
    folder = store.day_dir(day)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    files, rows, size = {}, 0, 0
    for channel, group in (("country", country), ("user", user)):
        table = sum_by_key([{"group": group, "song": song}], ("group", "song"))
        parts = partition_ints(table["group"], partitions)
        for p in range(partitions):
            keep = parts == p
            name = f"{channel}-{p:05d}.tbl"
            n, crc = codec.save_table(os.path.join(folder, name),
                                      {k: c[keep] for k, c in table.items()}, compact=True)
            files[name] = {"bytes": n, "crc32": crc, "rows": int(keep.sum())}
            rows += int(keep.sum())
            size += n
    manifest = {"format": STORE_FORMAT, "date": f"{day:%Y-%m-%d}", "partitions": partitions,
                "step": "daily", "job": "jobs.bench_long (the generator's model)", "params": {},
                "source": {"path": os.path.abspath(log), "identity": source_identity(log)},
                "lines": lines, "counters": {}, "corrupt_lines": 0, "corrupt_samples": [],
                "files": files, "stage_seconds": {}, "peak_rss_bytes": 0}
    manifest["checksum"] = _manifest_checksum(manifest)
    with open(os.path.join(folder, "manifest.json"), "wb") as f:
        f.write(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return rows, size


def build_store(root: str, lines: int, days: int, workers: int, seed: int = 42) -> dict[str, Any]:
    """The store of ``days`` days ending on END at ``lines`` a day (reused when complete)."""
    import time

    from jobs.bench_runs import _progress

    marker = os.path.join(root, "built.json")
    if os.path.exists(marker):
        with open(marker, "rb") as f:
            known = orjson.loads(f.read())
        step = os.path.join(root, "store", "daily")
        whole = all(os.path.exists(os.path.join(step, f"day-{END - dt.timedelta(days=i):%Y%m%d}",
                                                 "manifest.json")) for i in range(days))
        if known.get("days") == days and known.get("lines") == lines and whole:
            _progress(f"reusing the long store in {root}")
            return known
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(os.path.join(root, "logs"))
    _progress(f"building a store of {days} days of {lines:,} lines in {root}")
    started = time.perf_counter()
    dates = [END - dt.timedelta(days=i) for i in range(days)]
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        done = list(pool.map(_build_day, [root] * days, [lines] * days, dates, [seed] * days))
    info = {"days": days, "lines": lines, "rows": sum(r for r, _ in done),
            "bytes": sum(b for _, b in done), "seconds": round(time.perf_counter() - started, 1)}
    with open(marker, "wb") as f:
        f.write(orjson.dumps(info))
    return info


def window_rows(root: str, end: dt.date, days: int, rollups: bool) -> int:
    """Stored rows the window ending ``end`` reads: its days', or its rollups' and edge days';
    a keyed day's (mapreduce.keying) with its block's table, read once for all its days."""
    from mapreduce.rollup import cover

    first = end - dt.timedelta(days=days - 1)
    step = os.path.join(root, "store", "daily")
    levels = TopSongs.rollup_levels if rollups and TopSongs.rollup_levels else (10**9,)
    total = 0
    blocks: set[str] = set()
    for span in cover(first, end, levels):
        name = (f"day-{span.first:%Y%m%d}" if span.level == 1
                else f"rollup{span.level}-{span.first:%Y%m%d}")
        manifest = _manifest(os.path.join(step, name))
        total += sum(m["rows"] for m in manifest["files"].values())
        blocks.add(manifest.get("keyed", {}).get("folder", ""))
    for folder in blocks - {""}:
        total += sum(m["rows"] for m in _manifest(os.path.join(step, folder))["files"].values())
    return total


def _manifest(folder: str) -> dict[str, Any]:
    with open(os.path.join(folder, "manifest.json"), "rb") as f:
        return orjson.loads(f.read())


def run_case(root: str, label: str, days: int, end: dt.date, workers: int,
             job: str, work: str, keep_days: int, rolled: bool) -> dict[str, Any]:
    """One timed ``mapreduce top`` (top 10) in a process of its own; its window-stage seconds
    from the summary it writes. ``keep_days``: the store's days, all kept (by default retention
    keeps the longest window run so far, and a 30-day case would delete a year's store)."""
    from jobs.bench_runs import _progress, _python, measure

    out = os.path.join(work, f"{label}-{days}")
    shutil.rmtree(out, ignore_errors=True)
    command = _python("mapreduce.cli", "top", "--days", str(days), "--top", "10",
                      "--logs", os.path.join(root, "logs"), "--out", out,
                      "--store", os.path.join(root, "store"), "--date", f"{end:%Y%m%d}",
                      "--workers", str(workers), "--keep-days", str(keep_days), "--quiet",
                      "--job", job)
    _progress(f"long window: {label}, {days} days ending {end}")
    wall, peak = measure(f"long {label} {days} days", command, out + ".console.txt")
    summary_name = [n for n in os.listdir(out) if n.endswith(".summary.json")][0]
    with open(os.path.join(out, summary_name), "rb") as f:
        stages = orjson.loads(f.read())["stage_seconds"]
    os.unlink(out + ".console.txt")
    window = sum(v for k, v in stages.items() if k in ("rollup", "window", "merge"))
    return {"wall_s": round(wall, 3), "window_stage_s": round(window, 3), "stages": stages,
            "peak_rss_bytes": peak,
            "rows_read": window_rows(root, end, days, rollups=rolled)}


def run_long(data: str, *, rate: int, lengths: list[int], rates: list[int], rate_days: int,
             workers: int) -> dict[str, Any]:
    """Every case; returns what bench.json's "long_window" holds."""
    work = os.path.join(data, "long", "runs")
    os.makedirs(work, exist_ok=True)
    rows: list[dict[str, Any]] = []
    plan = [(rate, n) for n in lengths] + [(r, rate_days) for r in rates if r != rate or
                                            rate_days not in lengths]
    stores: dict[str, dict[str, Any]] = {}
    for r, n in plan:
        root = os.path.join(data, "long", f"r{r}")
        need = max(n for q, n in plan if q == r) + 1
        if str(r) not in stores:
            stores[str(r)] = build_store(root, r, need, workers)
        built = stores[str(r)]
        row: dict[str, Any] = {"lines_per_day": r, "days": n, "partitions": partitions_for(r),
                               "stored_rows_per_day": round(built["rows"] / built["days"]),
                               "bytes_per_row": round(built["bytes"] / built["rows"], 3)}
        keep = built["days"]
        row["scratch"] = run_case(root, "scratch", n, END, workers, "jobs.bench_long:NoRollups",
                                  work, keep, rolled=False)
        row["first"] = run_case(root, "first", n, END - dt.timedelta(days=1), workers,
                                "jobs.bench_long:LongTopSongs", work, keep, rolled=True)
        row["next_day"] = run_case(root, "next", n, END, workers, "jobs.bench_long:LongTopSongs",
                                   work, keep, rolled=True)
        row["store"] = store_bytes(root)
        row["stored_days"] = built["days"]
        _same_outputs(os.path.join(work, f"scratch-{n}"), os.path.join(work, f"next-{n}"))
        rows.append(row)
    shutil.rmtree(work, ignore_errors=True)
    day_bytes = sum(s["bytes"] for s in stores.values())
    rollup_bytes = sum(store_bytes(os.path.join(data, "long", f"r{r}"))["blocks"]
                       for r in stores)
    return {"rollup_bytes_share": round(rollup_bytes / max(1, day_bytes), 3),
            "end": f"{END:%Y-%m-%d}", "workers": workers, "stores": stores, "cases": rows}


def _same_outputs(a: str, b: str) -> None:
    """The rolled-up next day's files are the from-scratch ones, byte for byte."""
    import filecmp

    from mapreduce.errors import JobError

    names = sorted(n for n in os.listdir(a) if n.endswith(".txt"))
    if not names or names != sorted(n for n in os.listdir(b) if n.endswith(".txt")):
        raise JobError(f"long window: {a} and {b} hold different files")
    for name in names:
        if not filecmp.cmp(os.path.join(a, name), os.path.join(b, name), shallow=False):
            raise JobError(f"long window: {name} from rollups differs from the from-scratch one")
    shutil.rmtree(a)
    shutil.rmtree(b)


def store_bytes(root: str) -> dict[str, int]:
    """Bytes on disk of a long store's step folder by kind: whole days, keyed days, blocks
    (rollups) and the keys folders' tables (hard links of blocks' tables: counted once)."""
    step = os.path.join(root, "store", "daily")
    out = {"days": 0, "keyed_days": 0, "blocks": 0, "keys": 0}
    seen: set[tuple[int, int]] = set()
    for name in sorted(os.listdir(step), key=lambda n: not n.startswith("rollup")):
        folder = os.path.join(step, name)
        if not os.path.isdir(folder) or name.startswith("."):
            continue
        kind = ("blocks" if name.startswith("rollup") else "keys" if name.startswith("keys")
                else "keyed_days" if "keyed" in _manifest(folder) else "days")
        for entry in os.scandir(folder):
            st = entry.stat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                out[kind] += st.st_size
    return out
