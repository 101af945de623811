"""Top K songs per country and per user over a window of calendar days, from the daily store.

    LOGS/listen-YYYYMMDD.log ──(cached per day)──▶ STORE/day-YYYYMMDD/   (jobs.listens.DailyListens)
    STORE days D-N+1 .. D ──window tasks, one per (channel, partition)──▶ top K per group
    ──merge in key order──▶ OUT/country_topK[_Ndays]_D.txt, OUT/user_topK[_Ndays]_D.txt,
                            OUT/topK[_Ndays]_D.summary.json

A new window job is a subclass of :class:`WindowJob` setting ``days`` and ``top``.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import os
import shutil
import time
from typing import Any, BinaryIO

import orjson

from mapreduce.codec import ChecksumError
from mapreduce.errors import JobError, UsageError
from mapreduce.executors import Backend
from mapreduce.fsutil import (atomic_writers, ensure_writable_folder, make_temp_dir,
                              remove_stale_temps)
from mapreduce.report import MemorySampler, StageClock
from mapreduce.runner import run_stage
from mapreduce.splits import DEFAULT_SPLIT_SIZE
from jobs.listens import log_date
from jobs.store import DEFAULT_PARTITIONS, Store
from jobs.window import WindowTask, merge_partitions, run_window

log = logging.getLogger(__name__)
CHANNELS = ("country", "user")
#: rows a window task sums at most (about 250 MB of working memory at this size)
MAX_WINDOW_ROWS = 3_000_000
MAX_TOP = 2**63 - 1


class WindowJob:
    """The top ``top`` songs per country and per user over the ``days`` days ending on a date."""

    days = 7
    top = 50

    def __init__(self, days: int | None = None, top: int | None = None) -> None:
        self.days = days if days is not None else type(self).days
        self.top = top if top is not None else type(self).top
        if self.days < 1:
            raise UsageError(f"--days must be at least 1, got {self.days}")
        if self.top < 1:
            raise UsageError(f"--top must be at least 1, got {self.top}")
        if self.top > MAX_TOP:  # ranks are int64: a larger K failed deep in numpy
            raise UsageError(f"--top must be at most {MAX_TOP}, got {self.top}")

    def stem(self, day: dt.date) -> str:
        span = "" if self.days == 7 else f"_{self.days}days"
        return f"top{self.top}{span}_{day:%Y%m%d}"

    def output_names(self, day: dt.date) -> dict[str, str]:
        stem = self.stem(day)
        return {"country": f"country_{stem}.txt", "user": f"user_{stem}.txt",
                "summary": f"{stem}.summary.json"}

    def window(self, end: dt.date) -> list[dt.date]:
        return [end - dt.timedelta(days=i) for i in range(self.days - 1, -1, -1)]


class Top50(WindowJob):
    days, top = 7, 50


def scan_logs(folder: str) -> dict[dt.date, str]:
    """Logs by date; any other name is ignored with one warning."""
    logs = {}
    for name in sorted(os.listdir(folder)):
        day = log_date(name)
        path = os.path.join(folder, name)
        if day is None:
            log.warning("ignoring %s: not a listen-YYYYMMDD.log name with a real date", path)
        else:
            logs[day] = path
    return logs


def parse_date(text: str, option: str = "--date") -> dt.date:
    for fmt in ("%Y%m%d", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            pass
    raise UsageError(f"{option} {text!r} is not a real date as YYYYMMDD or YYYY-MM-DD")


def check_folders(logs: str, out: str, store: str | None = None) -> None:
    """Every folder problem is a usage error found before any work; ``store`` too, which
    otherwise failed later as an OSError (exit 1), or, given the logs folder, filled it with
    store files that every later run warned about."""
    if not os.path.isdir(logs):
        raise UsageError(f"logs folder {logs} does not exist or is not a folder")
    if os.path.realpath(logs) == os.path.realpath(out):
        raise UsageError("--out must not be the logs folder: outputs would be mixed with the logs")
    if store is not None and os.path.realpath(logs) == os.path.realpath(store):
        raise UsageError("--store must not be the logs folder: its files would be mixed with "
                         "the logs")
    ensure_writable_folder(out, "output")
    if store is not None:
        ensure_writable_folder(store, "store")


def run_window_job(job: WindowJob, logs: str, out: str, backend: Backend, *,
                   date: dt.date | None = None, store: str | None = None, strict: bool = False,
                   quiet: bool = True, wait: bool = True, partitions: int = DEFAULT_PARTITIONS,
                   split_size: int = DEFAULT_SPLIT_SIZE) -> dict[str, Any]:
    """Compute the window ending on ``date`` (default: the newest log) and write its files."""
    store = store or os.path.join(out, "store")
    check_folders(logs, out, store)
    found = scan_logs(logs)
    if not found:
        raise JobError(f"no listen-YYYYMMDD.log file in {logs}")
    end = date or max(found)
    try:
        days = job.window(end)
    except OverflowError:  # was a traceback: --days 99999999, or --date 00010103
        raise UsageError(f"a window of {job.days} days ending {end.isoformat()} would begin "
                         "before the year 1") from None
    present = [d for d in days if d in found]
    missing = [d for d in days if d not in found]
    if not present:
        raise JobError(f"no log in the window {days[0]:%Y-%m-%d} .. {end:%Y-%m-%d} in {logs}")
    if missing:
        listed = ", ".join(f"{d:%Y-%m-%d}" for d in missing)
        if strict:
            raise JobError(f"--strict: {len(missing)} day(s) missing from the window: {listed}; "
                           "no files written")
        log.warning("%d day(s) missing from the window ending %s: %s; computing from the %d present",
                    len(missing), f"{end:%Y-%m-%d}", listed, len(present))
    store_obj = Store(store, partitions)
    clock = StageClock()
    started = time.time()
    names = job.output_names(end)
    paths = [os.path.join(out, names[k]) for k in (*CHANNELS, "summary")]
    # The three files are one result: written under the lock (a concurrent run's set never
    # mixes with ours) and committed together (a failure while writing any leaves all as
    # they were).
    with store_obj.locked(wait), MemorySampler() as memory:
        remove_stale_temps(out)
        with clock.stage("daily"):
            manifests: dict[dt.date, dict[str, Any]] = {}
            daily = {d: _ensure_day(store_obj, d, found[d], backend, split_size, quiet, manifests)
                     for d in present}
        with atomic_writers(paths) as (*channel_files, summary_file):
            lines = _write_window(job, store_obj, present, out, dict(zip(CHANNELS, channel_files)),
                                  names["summary"], backend, quiet, split_size, found, daily,
                                  manifests, clock)
            summary = _summary(job, days, end, present, missing, daily, lines, out, names,
                               store_obj, clock, started, memory.peak, backend)
            summary_file.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    return summary


def _summary(job: WindowJob, days: list[dt.date], end: dt.date, present: list[dt.date],
             missing: list[dt.date], daily: dict[dt.date, dict[str, Any]], lines: dict[str, int],
             out: str, names: dict[str, str], store_obj: Store, clock: StageClock,
             started: float, peak: int, backend: Backend) -> dict[str, Any]:
    return {
        "window": {"first": f"{days[0]:%Y-%m-%d}", "last": f"{end:%Y-%m-%d}", "days": job.days},
        "top": job.top,
        "days_used": [f"{d:%Y-%m-%d}" for d in present],
        "days_missing": [f"{d:%Y-%m-%d}" for d in missing],
        "days": {f"{d:%Y-%m-%d}": info for d, info in daily.items()},
        "corrupt_lines": {f"{d:%Y-%m-%d}": info["corrupt_lines"] for d, info in daily.items()},
        "input_lines_read": sum(info["lines_read"] for info in daily.values()),
        "output_lines": lines,
        "files": {k: os.path.join(os.path.abspath(out), v) for k, v in names.items()},
        "store": store_obj.root,
        "stage_seconds": clock.seconds,
        "wall_seconds": round(time.time() - started, 4),
        "peak_rss_bytes": peak,
        **backend.describe(),
    }


def _ensure_day(store: Store, day: dt.date, path: str, backend: Backend, split_size: int,
                quiet: bool, manifests: dict[dt.date, dict[str, Any]]) -> dict[str, Any]:
    """Reduce the day unless its stored reduction is fresh; its verified manifest goes into
    ``manifests`` (the window reads its tables from that, never from a second reading)."""
    if not os.path.isfile(path):
        raise JobError(f"cannot read log {path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise JobError(f"cannot read log {path}: permission denied")
    started = time.perf_counter()
    manifest = store.fresh_manifest(day, path)  # read once: what is checked is what is used
    cached = manifest is not None
    if manifest is None:
        log.info("reducing %s", path)
        manifest = store.reduce(day, path, backend, split_size=split_size, quiet=quiet)
    manifests[day] = manifest
    return {"log": path, "cached": cached, "lines": manifest["lines"],
            "lines_read": 0 if cached else manifest["lines"],
            "corrupt_lines": manifest["corrupt_lines"],
            "corrupt_samples": os.path.join(store.day_dir(day), "manifest.json"),
            "seconds": round(time.perf_counter() - started, 4)}


def _write_window(job: WindowJob, store: Store, present: list[dt.date], out: str,
                  files: dict[str, BinaryIO], scratch_name: str, backend: Backend, quiet: bool,
                  split_size: int, found: dict[dt.date, str],
                  daily: dict[dt.date, dict[str, Any]],
                  manifests: dict[dt.date, dict[str, Any]], clock: StageClock) -> dict[str, int]:
    """Run the window tasks and merge each channel into ``files[channel]``; returns lines per
    channel."""
    # A stage stops at its first failed task, so each attempt finds at most one damaged day:
    # one attempt more than there are days lets every day be reduced again once, never twice.
    recomputed: set[dt.date] = set()
    for _attempt in range(len(present) + 1):
        scratch = make_temp_dir(out, scratch_name)
        try:
            tasks = _window_tasks(job, store, present, manifests, scratch)
            try:
                with clock.stage("window"):
                    results = run_stage(backend, "window", tasks, run_window,
                                        where=lambda t: f"{t.channel} partition {t.partition}",
                                        unit="partition", quiet=quiet)
            except JobError as exc:
                bad = _corrupt_day(exc, store, present)
                if bad is None or bad in recomputed:
                    raise
                recomputed.add(bad)
                log.warning("store table of %s is damaged (%s); reducing that day again",
                            f"{bad:%Y-%m-%d}", exc.__cause__)
                store.discard(bad)
                daily[bad] = _ensure_day(store, bad, found[bad], backend, split_size, quiet,
                                         manifests)
                continue
            lines = {}
            with clock.stage("merge"):
                for channel in CHANNELS:
                    lines[channel] = merge_partitions(
                        [r for r in results if r.channel == channel], files[channel])
            return lines
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    raise AssertionError("unreachable")


def _window_tasks(job: WindowJob, store: Store, present: list[dt.date],
                  manifests: dict[dt.date, dict[str, Any]], scratch: str) -> list[WindowTask]:
    """One task per (channel, partition), or several when a partition holds more rows than a
    task may (days much larger than the store was sized for, or a long window): each then
    keeps the groups of one slice of a second hash, so memory stays bounded."""
    tasks = []
    for channel in CHANNELS:
        per_day = [store.tables(d, manifests[d], channel) for d in present]
        for p in range(store.partitions):
            found = [t[p] for t in per_day if p in t]
            if not found:
                continue
            inputs = tuple((path, crc) for path, crc, _ in found)
            slices = max(1, math.ceil(sum(rows for *_, rows in found) / MAX_WINDOW_ROWS))
            for s in range(slices):
                tasks.append(WindowTask(channel, p, inputs, job.top,
                                        os.path.join(scratch, f"{channel}-{p:05d}-{s:03d}"),
                                        slice_index=s, slices=slices))
    return tasks


def _corrupt_day(exc: JobError, store: Store, present: list[dt.date]) -> dt.date | None:
    cause = exc.__cause__
    if not isinstance(cause, ChecksumError):
        return None
    for day in present:
        if store.day_dir(day) in str(cause):
            return day
    return None
