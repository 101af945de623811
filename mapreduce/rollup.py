"""Rollups: partial window results of aligned blocks of days, kept in the store, so that a long
window combines a few dozen tables instead of one per day, and the next day's window reuses
all of them but the edges.

A job whose ``window_combine`` folds partial results into the same result as the raw days (a
sum, a union, a min, a max: ``WindowJob.rollups = True``) gets them. With levels (8, 64), the
days of a window are covered left to right by the largest aligned block that fits (a block of
L days starts on a day whose ordinal is a multiple of L), else by a single day:

    365 days ending 2024-12-30:  7 days | 5 blocks of 8 | 4 blocks of 64 | 3 blocks of 8 | 4 days

    STORE/STEP/rollup8-YYYYMMDD/   CHANNEL-PPPPP.tbl per channel and partition, manifest.json
    STORE/STEP/rollup64-YYYYMMDD/  built from its eight blocks of 8 (not from 64 days)

A rollup's manifest names the exact manifest (by its checksum) of every day it holds: a day
reduced again (its log changed, or its table was damaged), a day that arrives late or one that
is gone makes every rollup built on it stale, and it is built again from what is there now.
Each table's crc32 is in the manifest and is checked as it is read, like a day's. A day keyed
against its block (:mod:`mapreduce.keying`) keeps the checksum of the manifest it was reduced
with, which is what the block names. ``TopSongs`` keeps blocks of 64 days only (its days are
keyed against them): its window's edges are days, keyed at the start.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import time
import zlib
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from mapreduce.fsutil import commit_dir, make_temp_dir
from mapreduce.job import JobSpec, load_job
from mapreduce.memtune import release_free_memory
from mapreduce.sortedruns import DEFAULT_BUDGET, Input, SortedRuns, fold
from mapreduce.tablefile import TableWriter

ROLLUP_FORMAT = 1


@dataclass(frozen=True)
class Span:
    """``level`` days from ``first`` (level 1: one day)."""

    level: int
    first: dt.date

    @property
    def days(self) -> list[dt.date]:
        return [self.first + dt.timedelta(days=i) for i in range(self.level)]

    def parts(self, levels: tuple[int, ...]) -> list["Span"]:
        """The spans of the next level down that make this one."""
        below = max((lv for lv in levels if lv < self.level), default=1)
        return [Span(below, self.first + dt.timedelta(days=i))
                for i in range(0, self.level, below)]


def cover(first: dt.date, last: dt.date, levels: tuple[int, ...]) -> list[Span]:
    """The days ``first``..``last`` as aligned blocks of ``levels`` (largest first) and days."""
    out = []
    pos, end = first.toordinal(), last.toordinal()
    while pos <= end:
        for level in sorted(levels, reverse=True):
            if pos % level == 0 and pos + level - 1 <= end:
                out.append(Span(level, dt.date.fromordinal(pos)))
                pos += level
                break
        else:
            out.append(Span(1, dt.date.fromordinal(pos)))
            pos += 1
    return out


def check_levels(levels: tuple[int, ...]) -> None:
    """Each level a multiple of the one below it (a block is made of whole smaller blocks)."""
    ordered = sorted(levels)
    if any(lv < 2 for lv in ordered) or any(b % a for a, b in zip(ordered, ordered[1:])):
        raise ValueError(f"rollup levels must be >= 2, each a multiple of the last: {levels}")


def combine_identity(job: Any) -> str:
    """What a rollup's tables depend on besides the days: the class whose ``window_combine``
    made them (the per-input step is the store folder they live in)."""
    for cls in type(job).__mro__:
        if "window_combine" in cls.__dict__:
            return f"{cls.__module__}.{cls.__qualname__}"
    raise AssertionError("a WindowJob always has window_combine")


@dataclass(frozen=True)
class RollupTask:
    job: JobSpec
    channel: str
    partition: int
    inputs: tuple[Input, ...]   # what to read of the parts (mapreduce.sortedruns.Input)
    out_path: str
    budget: int = DEFAULT_BUDGET


@dataclass(frozen=True)
class RollupResult:
    channel: str
    partition: int
    path: str | None       # None: no rows
    bytes: int
    crc32: int
    rows: int
    seconds: float


def run_rollup(task: RollupTask) -> RollupResult:
    """Fold the parts' tables of one partition with the job's ``window_combine``, one key
    range at a time, into one compact table."""
    job = load_job(task.job)
    started = time.perf_counter()
    writer: TableWriter | None = None
    rows = 0
    try:
        with SortedRuns(list(task.inputs), job.group_column(task.channel), task.budget) as runs:
            for expected, parts in runs.chunk_parts():
                combined = fold(parts, lambda tables: job.window_combine(task.channel, tables),
                                task.budget, expected)
                n = len(next(iter(combined.values()))) if combined else 0
                if n:
                    if writer is None:
                        writer = TableWriter(task.out_path)
                    writer.append(combined)
                    rows += n
        if writer is None:
            return RollupResult(task.channel, task.partition, None, 0, 0, 0,
                                time.perf_counter() - started)
        size, crc = writer.close()
        writer = None
        return RollupResult(task.channel, task.partition, task.out_path, size, crc, rows,
                            time.perf_counter() - started)
    finally:
        if writer is not None:
            writer.abort()
        release_free_memory()


class Rollups:
    """The rollups of one job's ``window_combine`` in a store's step folder."""

    def __init__(self, store: Any, job: Any) -> None:
        self.store = store
        self.levels = tuple(sorted(job.rollup_levels))
        check_levels(self.levels)
        self.identity = combine_identity(job)

    def folder(self, span: Span) -> str:
        return os.path.join(self.store.root, self.store.step,
                            f"rollup{span.level}-{span.first:%Y%m%d}")

    def members(self, span: Span, manifests: dict[dt.date, dict[str, Any]]) -> dict[str, int]:
        """Day -> checksum of the day's manifest, for the days of ``span`` present now."""
        # a keyed day keeps the checksum of the manifest it was reduced with (mapreduce.keying)
        return {f"{d:%Y-%m-%d}": manifests[d].get("content", manifests[d]["checksum"])
                for d in span.days if d in manifests}

    def fresh(self, span: Span, manifests: dict[dt.date, dict[str, Any]]) -> dict[str, Any] | None:
        """The span's manifest if it was built from exactly the days' results there are now."""
        path = os.path.join(self.folder(span), "manifest.json")
        try:
            with open(path, "rb") as f:
                manifest = orjson.loads(f.read())
        except (OSError, orjson.JSONDecodeError):
            return None
        if not isinstance(manifest, dict) or manifest.get("checksum") != _checksum(manifest):
            return None
        ok = (manifest.get("format") == ROLLUP_FORMAT and manifest.get("combine") == self.identity
              and manifest.get("partitions") == self.store.partitions
              and manifest.get("members") == self.members(span, manifests))
        return manifest if ok else None

    def tables(self, span: Span, manifest: dict[str, Any],
               channel: str) -> dict[int, tuple[tuple[Any, ...], int]]:
        """Partition -> ((path, crc32), rows), as :meth:`Store.tables`."""
        folder = self.folder(span)
        return {int(name[len(channel) + 1:-4]): ((os.path.join(folder, name), m["crc32"]),
                                                 m["rows"])
                for name, m in manifest["files"].items() if name.startswith(channel + "-")}

    def discard(self, folder: str) -> None:
        shutil.rmtree(folder, ignore_errors=True)

    def build(self, spans: list[Span],
              sources: Callable[[Span, str], list[dict[int, tuple[Input, int]]]],
              manifests: dict[dt.date, dict[str, Any]], channels: tuple[str, ...],
              spec: JobSpec, run_tasks: Callable[[list[RollupTask]], list[RollupResult]],
              budget: int = DEFAULT_BUDGET) -> dict[Span, dict[str, Any]]:
        """Build ``spans`` (all of one level) in one stage, each from its parts' tables
        (``sources(span, channel)``: {partition: (what to read, rows)} per part), and commit
        each with its manifest; returns their manifests."""
        staging = {span: make_temp_dir(os.path.join(self.store.root, self.store.step),
                                       f"rollup{span.level}-{span.first:%Y%m%d}")
                   for span in spans}
        try:
            tasks: list[RollupTask] = []
            for span in spans:
                for channel in channels:
                    per_part = sources(span, channel)
                    for p in range(self.store.partitions):
                        found = tuple(tables[p][0] for tables in per_part if p in tables)
                        if found:
                            tasks.append(RollupTask(spec, channel, p, found, os.path.join(
                                staging[span], f"{channel}-{p:05d}.tbl"), budget))
            results = run_tasks(tasks)
            done: dict[Span, dict[str, Any]] = {}
            by_folder: dict[str, list[RollupResult]] = {}
            for task, result in zip(tasks, results):
                by_folder.setdefault(os.path.dirname(task.out_path), []).append(result)
            for span in spans:
                files = {f"{r.channel}-{r.partition:05d}.tbl": {"bytes": r.bytes,
                                                                "crc32": r.crc32, "rows": r.rows}
                         for r in by_folder.get(staging[span], []) if r.path}
                manifest = {"format": ROLLUP_FORMAT, "level": span.level,
                            "first": f"{span.first:%Y-%m-%d}", "combine": self.identity,
                            "partitions": self.store.partitions,
                            "members": self.members(span, manifests), "files": files}
                manifest["checksum"] = _checksum(manifest)
                commit_dir(staging[span], orjson.dumps(manifest, option=orjson.OPT_INDENT_2),
                           self.folder(span))
                done[span] = manifest
            return done
        finally:
            for folder in staging.values():
                shutil.rmtree(folder, ignore_errors=True)


def _checksum(manifest: dict[str, Any]) -> int:
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return zlib.crc32(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
