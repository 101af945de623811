"""Keyed days: the days of a complete block of days stored as row numbers into the block's
table, so that a year of days and its blocks fit in the store.

A block's table (a rollup: :mod:`mapreduce.rollup`) holds every key of its days once, sorted;
a day's table holds its own keys again, most of them also on other days. Re-coded as the
row number of each of its rows in the block's table (its ``row_keys`` columns dropped, its
value columns kept), a day's table shrinks to a quarter (a full-rate day of the top-50 job:
4.4 bytes a user row -> 1.0; the row numbers are increasing, so each is a small difference)::

    STEP/rollup64-YYYYMMDD/        the block: CHANNEL-PPPPP.tbl (group, song, count), manifest
    STEP/keys64-YYYYMMDD-CCCCCCCC/ the same tables, hard links, for as long as a day uses them
    STEP/day-YYYYMMDD/             CHANNEL-PPPPP.tbl (@key, count), manifest naming the keys

The keyed days point into a folder of their own, named by the block manifest's checksum, not
into the block's: a block built again (a day of it changed) replaces its folder, and the days
still keyed against the old one stay readable until they are keyed again (the next run) and
the old folder, used by no day any more, is removed. A day's manifest keeps the checksum of
the manifest it had when it was reduced (``content``): that is what a block records of its
days, so keying a day never makes its block stale.

Only days whose block ended ``keyed_after`` days or more before a window's end are keyed: the
short windows (7 days) never read the block's table to decode a day. At most
``keyed_per_run`` days are keyed a run, oldest first: keying reads the block's table (about
0.56 of its 64 days' rows) and the days, and a block's keying all at once would add minutes to
one day's run.
"""
from __future__ import annotations

import datetime as dt
import errno
import os
import shutil
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import orjson

from mapreduce import kernels
from mapreduce.fsutil import commit_dir, make_temp_dir
from mapreduce.job import JobSpec, load_job
from mapreduce.memtune import release_free_memory
from mapreduce.sortedruns import DEFAULT_BUDGET, KEY_COLUMN, Input, SortedRuns, Table
from mapreduce.tablefile import TableWriter


@dataclass(frozen=True)
class KeyingTask:
    job: JobSpec
    channel: str
    partition: int
    keys: Input                               # the block's table of this partition
    days: tuple[tuple[str, Input], ...]       # (keyed table to write, the day's table)
    budget: int = DEFAULT_BUDGET


@dataclass(frozen=True)
class KeyedTable:
    path: str
    bytes: int
    crc32: int
    rows: int


@dataclass(frozen=True)
class KeyingResult:
    channel: str
    partition: int
    tables: tuple[KeyedTable | None, ...]     # per day of the task; None: the day had no rows
    seconds: float


def run_keying(task: KeyingTask) -> KeyingResult:
    """Write each day's table of one partition as row numbers into the block's table, reading
    the block and the days together one key range at a time."""
    job = load_job(task.job)
    names = tuple(job.row_keys)
    started = time.perf_counter()
    writers: list[TableWriter | None] = [None] * len(task.days)
    rows = [0] * len(task.days)
    try:
        with SortedRuns([task.keys, *(ref for _, ref in task.days)],
                        job.group_column(task.channel), task.budget) as runs:
            base = 0
            columns: list[str] = []
            for _, parts in runs.chunk_runs():
                block: Table | None = None
                for i, table in parts:
                    if i == 0:
                        columns = list(table)
                        block = {n: _u64(table[n]) if table[n].dtype.kind == "u" else table[n]
                                 for n in names}
                        continue
                    if list(table) != columns:  # decoding takes the keys from the block
                        raise ValueError(f"{task.days[i - 1][1][0]}: columns {list(table)}, its "
                                         f"block's {columns}")
                    if block is None:
                        raise ValueError(f"{task.days[i - 1][1][0]}: rows that its block "
                                         f"{task.keys[0]} does not hold")
                    at = match_rows(block, table, names) + base
                    keyed = {KEY_COLUMN: at.astype(np.uint64),
                             **{n: c for n, c in table.items() if n not in names}}
                    if writers[i - 1] is None:
                        writers[i - 1] = TableWriter(task.days[i - 1][0])
                    writers[i - 1].append(keyed)
                    rows[i - 1] += len(at)
                if block is not None:
                    base += len(block[names[0]])
        out: list[KeyedTable | None] = []
        for i, writer in enumerate(writers):
            if writer is None:
                out.append(None)
                continue
            size, crc = writer.close()
            writers[i] = None
            out.append(KeyedTable(task.days[i][0], size, crc, rows[i]))
        return KeyingResult(task.channel, task.partition, tuple(out),
                            time.perf_counter() - started)
    finally:
        for writer in writers:
            if writer is not None:
                writer.abort()
        release_free_memory()


def match_rows(block: Table, part: Table, names: tuple[str, ...]) -> np.ndarray:
    """The row of ``block`` holding each row's key (columns ``names``) of ``part``; both are
    sorted by those columns and ``block`` holds each key once. A key it lacks is an error."""
    n = len(part[names[0]])
    if len(names) == 2 and kernels.enabled() and all(
            block[c].dtype.kind == "u" and part[c].dtype.kind == "u" for c in names):
        out = np.empty(n, dtype=np.int64)
        missing = _match2(*(_u64(block[c]) for c in names), *(_u64(part[c]) for c in names), out)
    else:
        dtypes = [np.promote_types(block[c].dtype, part[c].dtype) for c in names]
        keys = np.rec.fromarrays([block[c].astype(t) for c, t in zip(names, dtypes)])
        want = np.rec.fromarrays([part[c].astype(t) for c, t in zip(names, dtypes)])
        out = np.searchsorted(keys, want).astype(np.int64)
        inside = np.minimum(out, max(len(keys) - 1, 0))
        ok = (out < len(keys)) & np.logical_and.reduce(
            [block[c][inside] == part[c] for c in names]) if len(keys) else np.zeros(n, bool)
        missing = -1 if bool(np.all(ok)) else int(np.flatnonzero(~ok)[0])
    if missing >= 0:
        key = tuple(int(part[c][missing]) for c in names)
        raise ValueError(f"key {key} is not in its block's table")
    return out


def _u64(column: np.ndarray) -> np.ndarray:
    return column if column.dtype == np.uint64 else column.astype(np.uint64)


@kernels.kernel
def _match2(a0: np.ndarray, a1: np.ndarray, b0: np.ndarray, b1: np.ndarray,
            out: np.ndarray) -> int:
    # a day holds a few percent of its block's keys: each is found by galloping forward from
    # the last one found, not by walking every key between them
    i = 0
    n = len(a0)
    for j in range(len(b0)):
        g, s = b0[j], b1[j]
        step = 1
        lo = i
        while i + step < n and (a0[i + step] < g or (a0[i + step] == g and a1[i + step] < s)):
            lo = i + step
            step *= 2
        hi = min(i + step, n)      # the first key >= (g, s) is in lo .. hi
        while lo < hi:
            mid = (lo + hi) // 2
            if a0[mid] < g or (a0[mid] == g and a1[mid] < s):
                lo = mid + 1
            else:
                hi = mid
        i = lo
        if i == n or a0[i] != g or a1[i] != s:
            return j
        out[j] = i
    return -1


def key_days(job: Any, spec: JobSpec, store: Any, manifests: dict[dt.date, dict[str, Any]],
             end: dt.date, run_tasks: Callable[[list[KeyingTask]], list[KeyingResult]],
             budget: int = DEFAULT_BUDGET) -> list[dt.date]:
    """Key the days of each block of the job's top rollup level that lies in ``manifests``
    (a window's days, verified) and ended ``job.keyed_after`` days or more before ``end``,
    against that block: at most ``job.keyed_per_run`` days, oldest first, so that keying a
    block is spread over a few runs instead of adding all of it to one. Returns the days
    keyed."""
    from mapreduce.rollup import Rollups, Span

    rollups = Rollups(store, job)
    top = max(rollups.levels)
    if not manifests:
        return []
    # blocks within the window's days only: a block at its start has days it does not verify
    low, high = min(manifests), min(max(manifests), end - dt.timedelta(days=job.keyed_after))
    firsts = sorted({dt.date.fromordinal(d.toordinal() // top * top) for d in manifests})
    keyed: list[dt.date] = []
    for first in firsts:
        span = Span(top, first)
        room = job.keyed_per_run - len(keyed)
        if span.first < low or span.days[-1] > high or room <= 0:
            continue
        block = rollups.fresh(span, manifests)
        if block is None:
            continue
        name = f"keys{top}-{first:%Y%m%d}-{block['checksum']:08x}"
        todo = [d for d in span.days if d in manifests
                and manifests[d].get("keyed", {}).get("folder") != name][:room]
        if todo:
            folder = _keys_folder(rollups.folder(span), block, os.path.join(
                store.root, store.step, name))
            keyed += _key(spec, store, manifests, todo, block, folder, run_tasks, budget)
    return keyed


def _keys_folder(block_folder: str, block: dict[str, Any], folder: str) -> str:
    """The block's tables under ``folder`` (hard links: no bytes copied), made once."""
    if os.path.isfile(os.path.join(folder, "manifest.json")):
        return folder
    staging = make_temp_dir(os.path.dirname(folder), os.path.basename(folder))
    try:
        for name in block["files"]:
            source, target = os.path.join(block_folder, name), os.path.join(staging, name)
            try:
                os.link(source, target)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                shutil.copyfile(source, target)
        commit_dir(staging, orjson.dumps(block, option=orjson.OPT_INDENT_2), folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _key(spec: JobSpec, store: Any, manifests: dict[dt.date, dict[str, Any]],
         days: list[dt.date], block: dict[str, Any], folder: str,
         run_tasks: Callable[[list[KeyingTask]], list[KeyingResult]],
         budget: int) -> list[dt.date]:
    staging = {d: make_temp_dir(os.path.dirname(store.day_dir(d)), f"day-{d:%Y%m%d}")
               for d in days}
    try:
        tasks: list[KeyingTask] = []
        for name, meta in sorted(block["files"].items()):
            channel, p = name[:-10], int(name[-9:-4])
            refs = []
            for d in days:
                table = store.tables(d, manifests[d], channel).get(p)
                if table is not None:
                    refs.append((os.path.join(staging[d], name), table[0]))
            if refs:
                tasks.append(KeyingTask(spec, channel, p, (os.path.join(folder, name),
                                                           meta["crc32"]), tuple(refs), budget))
        results = run_tasks(tasks)
        day_of = {folder: d for d, folder in staging.items()}
        written: dict[dt.date, dict[str, Any]] = {d: {} for d in days}
        for task, result in zip(tasks, results):
            keys_crc = task.keys[1]
            for (path, _), table in zip(task.days, result.tables):
                if table is not None:
                    written[day_of[os.path.dirname(path)]][os.path.basename(path)] = {
                        "bytes": table.bytes, "crc32": table.crc32, "rows": table.rows,
                        "keys_crc32": keys_crc}
        for d in days:
            old = manifests[d]
            rows = {n: m["rows"] for n, m in old["files"].items() if m["rows"]}
            if {n: m["rows"] for n, m in written[d].items()} != rows:
                raise AssertionError(f"keyed tables of {d:%Y-%m-%d} hold other rows than its "
                                     "tables")
            manifest = {k: v for k, v in old.items() if k != "checksum"}
            manifest.update(files=written[d], keyed={"folder": os.path.basename(folder)},
                            content=old.get("content", old["checksum"]))
            manifest["checksum"] = store.checksum(manifest)
            # the day's content and reduction are those of its old manifest: its time stays
            was = os.stat(os.path.join(store.day_dir(d), "manifest.json")).st_mtime_ns
            commit_dir(staging[d], orjson.dumps(manifest, option=orjson.OPT_INDENT_2),
                       store.day_dir(d), mtime_ns=was)
            manifests[d] = manifest
        return days
    finally:
        for path in staging.values():
            shutil.rmtree(path, ignore_errors=True)


def remove_unused_keys(store: Any) -> list[str]:
    """Remove the keys folders that no stored day's manifest names (after a day was keyed
    again against a block built anew, or removed from the store)."""
    step = os.path.join(store.root, store.step)
    try:
        folders = [n for n in os.listdir(step) if n.startswith("keys") and "-" in n
                   and not n.startswith(".")]
    except FileNotFoundError:
        return []
    if not folders:  # no manifest to read (this runs after every run of such a job)
        return []
    used = set()
    for day in store.stored_days():
        manifest = store.manifest(day)
        if manifest is not None:
            used.add(manifest.get("keyed", {}).get("folder"))
            continue
        try:  # one we cannot believe may still name a folder: keep any it mentions
            with open(os.path.join(store.day_dir(day), "manifest.json"), "rb") as f:
                raw = f.read()
        except OSError:
            continue
        used.update(n for n in folders if n.encode() in raw)
    removed = [n for n in folders if n not in used]
    for name in removed:
        shutil.rmtree(os.path.join(step, name), ignore_errors=True)
    return removed
