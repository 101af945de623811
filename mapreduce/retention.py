"""What a windowed job keeps on disk, and whether a run has room to write.

* Store days (``--keep-days N``): after a successful run, the N newest days of the step's
  folder are kept, and always every day of the window just computed; the blocks of days
  (rollups) that start before the oldest day kept are removed with them. The default N is the
  longest window ever computed on that step (recorded in ``STORE/STEP/retention.json``), so the
  yearly job's 365 days survive a top50 run that shares its step. N below the window is raised
  to the window: a window's own days are never removed.
* Output dates (``--keep-outputs N``): after a successful run, the files of the N newest dates
  of this job in OUT (its channels' files, its summary and the daemon's ``.report.html`` page)
  are kept, and always the date just computed. Default: all.
* Free space: before a run starts, its store and output folders must have room for an estimate
  of what it writes: 0.7 times the (uncompressed) size of the logs it reduces, the scratch copy
  of the largest compressed one, and as much as the newest outputs of the job already take.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
from dataclasses import dataclass
from typing import Any, Iterable

import orjson

from mapreduce.compressed import suffix_of, uncompressed_size
from mapreduce.errors import JobError
from mapreduce.fsutil import atomic_write_bytes
from mapreduce.inputs import DatedInputs
from mapreduce.store import Store

log = logging.getLogger(__name__)

#: store bytes per log byte (measured: 0.6-0.65 on generated logs), with a margin
STORE_RATIO = 0.7
_RECORD = "retention.json"


@dataclass(frozen=True)
class Retention:
    keep_days: int | None = None      # None: the longest window in use
    keep_outputs: int | None = None   # None: every date


def output_dates(job: Any, out: str) -> dict[dt.date, list[str]]:
    """The dates of ``job``'s outputs present in ``out``, each with its files' paths (those
    present: channels, summary, report page)."""
    sample = dt.date(2000, 1, 1)
    pattern = job.output_names(sample)["summary"].replace(f"{sample:%Y%m%d}", "{date}")
    found, _ = DatedInputs(pattern, compressions=()).scan(out)
    dates = {}
    for day in found:
        names = [*job.output_names(day).values(), job.report_name(day)]
        dates[day] = [p for p in (os.path.join(out, n) for n in names) if os.path.lexists(p)]
    return dates


def longest_window(store: Store, days: int) -> int:
    """Record that a window of ``days`` is in use on this step; the longest recorded."""
    path = os.path.join(store.root, store.step, _RECORD)
    try:
        with open(path, "rb") as f:
            longest = int(orjson.loads(f.read()).get("longest_window", 0))
    except (OSError, ValueError, AttributeError, TypeError):
        longest = 0
    if days > longest:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write_bytes(path, orjson.dumps({"longest_window": days}))
        longest = days
    return longest


def apply(policy: Retention, job: Any, store: Store, out: str, end: dt.date,
          window: list[dt.date]) -> dict[str, list[str]]:
    """Remove what the policy does not keep, after the run for ``end`` succeeded (under the
    store's lock); returns what was removed."""
    removed: dict[str, list[str]] = {"days": [], "outputs": []}  # and "rollups"
    longest = longest_window(store, len(window))
    keep_n = max(policy.keep_days or longest, len(window))
    stored = store.stored_days()
    keep = set(stored[-keep_n:]) | set(window)
    for day in stored:
        if day not in keep:
            store.discard(day)
            removed["days"].append(f"{day:%Y-%m-%d}")
    if keep:
        removed["rollups"] = _remove_rollups_before(store, min(keep))
    if policy.keep_outputs is not None:
        dates = output_dates(job, out)
        keep_out = set(sorted(dates)[-policy.keep_outputs:]) | {end}
        for day, paths in dates.items():
            if day not in keep_out:
                for path in paths:
                    try:
                        os.unlink(path)
                    except FileNotFoundError:
                        pass
                removed["outputs"].append(f"{day:%Y-%m-%d}")
    if removed["days"] or removed["outputs"] or removed.get("rollups"):
        log.info("retention: removed %d store day(s), %d rollup(s) and %d output date(s)",
                 len(removed["days"]), len(removed.get("rollups", [])), len(removed["outputs"]))
    return removed


def _remove_rollups_before(store: Store, oldest: dt.date) -> list[str]:
    """Remove the rollups (blocks of days) that start before the oldest day kept: no window
    over the days kept holds them whole again (the days of one that are keyed keep what they
    point into in a keys folder of their own)."""
    step = os.path.join(store.root, store.step)
    removed = []
    try:
        names = os.listdir(step)
    except FileNotFoundError:
        return []
    for name in names:
        level, _, first = name.partition("-")
        if not level.startswith("rollup") or not level[6:].isdigit() or len(first) != 8:
            continue
        try:
            start = dt.datetime.strptime(first, "%Y%m%d").date()
        except ValueError:
            continue
        if start < oldest:
            shutil.rmtree(os.path.join(step, name), ignore_errors=True)
            removed.append(name)
    return sorted(removed)


def folder_bytes(path: str) -> int:
    """Bytes of the regular files under ``path`` (links not followed)."""
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                st = os.lstat(os.path.join(folder, name))
            except FileNotFoundError:
                continue
            total += st.st_size
    return total


def estimate_bytes(logs_to_reduce: Iterable[str], job: Any, out: str) -> tuple[int, int]:
    """What a run will write (see the module's docstring): (to the store, to the outputs)."""
    logs = [p for p in logs_to_reduce if os.path.isfile(p)]  # the run reports the others
    sizes = [uncompressed_size(p) for p in logs]
    scratch = max((s for p, s in zip(logs, sizes) if suffix_of(p)), default=0)
    dates = output_dates(job, out)
    last = sum(os.path.getsize(p) for p in dates[max(dates)] if os.path.isfile(p)) if dates else 0
    return int(STORE_RATIO * sum(sizes)) + scratch, last


def check_free_space(store_root: str, out: str, need: tuple[int, int]) -> None:
    """A JobError, before any work, when the store's or the outputs' filesystem has less free
    space than the run will write there (both needs on one filesystem when they share it)."""
    wants: dict[int, tuple[str, int]] = {}
    for folder, n in ((store_root, need[0]), (out, need[1])):
        dev = os.stat(folder).st_dev
        where, had = wants.get(dev, (folder, 0))
        wants[dev] = (where, had + n)
    for folder, n in wants.values():
        have = shutil.disk_usage(folder).free
        if have < n:
            raise JobError(f"not enough free space in {folder}: this run writes about {_size(n)} "
                           f"there, {_size(have)} free; free some space (see --keep-days and "
                           "--keep-outputs) and run again")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"
