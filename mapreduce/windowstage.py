"""The window stage of a windowed job: which tables each window task reads (days, or rollups
of aligned blocks of days when the job allows them), the window tasks, the merge of their
lines into the output files, and what to do when a stored table turns out damaged.

    present days ──cover──▶ spans: days and blocks of 8, 64 days (rollups, built if stale)
    per (channel, partition): the spans' tables ──run_window──▶ lines in key order
    per (channel, key range): every partition's lines of the range ──run_merge──▶ part
    parts ──concatenate──▶ the channel's file
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import time
from typing import Any, BinaryIO

from mapreduce.codec import ChecksumError
from mapreduce.errors import JobError
from mapreduce.fsutil import make_temp_dir
from mapreduce.job import JobSpec
from mapreduce.report import StageClock
from mapreduce.rollup import Rollups, Span, cover, run_rollup
from mapreduce.runner import run_stage
from mapreduce.trace import OK, TaskEvent, worker_name
from mapreduce.window import (WindowTask, concatenate, merge_into, merge_tasks, run_merge,
                              run_window)

log = logging.getLogger(__name__)


def write_window(job: Any, spec: JobSpec, channels: tuple[str, ...], days: Any,
                 present: list[dt.date], run: Any, files: dict[str, BinaryIO],
                 scratch_name: str, clock: StageClock, budget: int) -> dict[str, int]:
    """Run the window tasks and merge each channel into ``files[channel]``; returns lines per
    channel. ``days`` is the run's day results (their store, verified manifests, ``redo``)."""
    rollups = Rollups(days.store, job) if getattr(job, "rollups", False) else None
    # A stage stops at its first failed task, so each attempt finds at most one damaged
    # table: a day is reduced again at most once, a rollup rebuilt at most once.
    recomputed: set[dt.date] = set()
    discarded: set[str] = set()
    spans = cover(present[0], present[-1], rollups.levels) if rollups else []
    for _attempt in range(len(present) + len(spans) + 1):
        scratch = make_temp_dir(run.out, scratch_name)
        try:
            try:
                inputs = _inputs(job, spec, channels, days, present, run, rollups, spans,
                                 clock, budget)
                tasks = [WindowTask(spec, channel, p, found,
                                    os.path.join(scratch, f"{channel}-{p:05d}"), budget)
                         for channel in channels for p, found in sorted(inputs[channel].items())]
                with clock.stage("window"):
                    results = run_stage(run.backend, "window", tasks, run_window,
                                        where=lambda t: f"{t.channel} partition {t.partition}",
                                        unit="partition", quiet=run.quiet, trace=run.trace)
            except JobError as exc:
                what = _damaged(exc, days.store, present)
                if what is None or what in recomputed or what in discarded:
                    exc.job, exc.step = exc.job or spec.label, exc.step or "window"
                    raise
                if isinstance(what, dt.date):
                    recomputed.add(what)
                    log.warning("store table of %s is damaged (%s); reducing that day again",
                                f"{what:%Y-%m-%d}", exc.__cause__)
                    days.redo(what)
                elif os.path.basename(what).startswith("keys"):
                    # the block's table the keyed days point into: they cannot be read any more
                    discarded.add(what)
                    keyed = [d for d in present if days.manifests[d].get("keyed", {}).get(
                        "folder") == os.path.basename(what)]
                    log.warning("block table %s is damaged (%s); reducing the %d day(s) keyed "
                                "against it again", what, exc.__cause__, len(keyed))
                    for day in keyed:
                        days.redo(day)
                else:
                    discarded.add(what)
                    log.warning("rollup %s is damaged (%s); building it again", what,
                                exc.__cause__)
                    shutil.rmtree(what, ignore_errors=True)
                continue
            with clock.stage("merge"):
                workers = max(1, run.backend.workers)
                per_channel = {c: merge_tasks([r for r in results if r.channel == c], c,
                                              workers, scratch) for c in channels}
                # a channel of one range (few lines) costs less merged here than sent out
                spread = [t for tasks_c in per_channel.values() if len(tasks_c) > 1
                          for t in tasks_c]
                parts = run_stage(run.backend, "merge", spread, run_merge,
                                  where=lambda t: f"{t.channel} range {t.index}",
                                  unit="range", quiet=run.quiet, trace=run.trace)
                lines = {}
                for channel, tasks_c in per_channel.items():
                    if len(tasks_c) == 1:
                        began = time.time()
                        lines[channel] = merge_into(tasks_c[0], files[channel])[0]
                        run.trace.add(TaskEvent("merge", len(parts) + len(lines) - 1,
                                                f"{channel}: {lines[channel]} lines",
                                                worker_name(), began, time.time(), 1, OK))
                    else:
                        lines[channel] = concatenate(
                            [p for p in parts if p.channel == channel], files[channel])
                return lines
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    raise AssertionError("unreachable")


def _inputs(job: Any, spec: JobSpec, channels: tuple[str, ...], days: Any,
            present: list[dt.date], run: Any, rollups: Rollups | None, spans: list[Span],
            clock: StageClock, budget: int) -> dict[str, dict[int, tuple[tuple[Any, ...], ...]]]:
    """Channel -> partition -> what its window task reads: (path, crc32) of each table, or
    (path, crc32, block table's path, its crc32) of a keyed day's."""
    store, manifests = days.store, days.manifests
    ready: dict[Span, dict[str, Any]] = {}
    if rollups is not None:
        with clock.stage("rollup"):
            ready = _ensure_rollups(rollups, spec, channels, days, spans, run, budget)
    out: dict[str, dict[int, list[tuple[Any, ...]]]] = {c: {} for c in channels}
    for channel in channels:
        if rollups is None:
            per_span = [store.tables(d, manifests[d], channel) for d in present]
        else:
            per_span = [store.tables(s.first, manifests[s.first], channel) if s.level == 1
                        else rollups.tables(s, ready[s], channel)
                        for s in spans if s in ready or (s.level == 1 and s.first in manifests)]
        for tables in per_span:
            for p, (ref, _rows) in tables.items():
                out[channel].setdefault(p, []).append(ref)
    return {c: {p: tuple(v) for p, v in per.items()} for c, per in out.items()}


def _ensure_rollups(rollups: Rollups, spec: JobSpec, channels: tuple[str, ...], days: Any,
                    spans: list[Span], run: Any, budget: int) -> dict[Span, dict[str, Any]]:
    """The manifests of the window's blocks (and of the smaller blocks they are built from),
    building the stale ones level by level, each level in one stage."""
    manifests = days.manifests
    ready: dict[Span, dict[str, Any]] = {}
    stale: dict[int, list[Span]] = {}

    def require(span: Span) -> None:
        if span.level == 1 or span in ready or not any(d in manifests for d in span.days):
            return
        manifest = rollups.fresh(span, manifests)
        if manifest is not None:
            ready[span] = manifest
            return
        for part in span.parts(rollups.levels):
            require(part)
        stale.setdefault(span.level, []).append(span)

    for span in spans:
        require(span)

    def sources(span: Span, channel: str) -> list[dict[int, tuple[Any, int]]]:
        return [days.store.tables(part.first, manifests[part.first], channel) if part.level == 1
                else rollups.tables(part, ready[part], channel)
                for part in span.parts(rollups.levels)
                if (part.level == 1 and part.first in manifests) or part in ready]

    def run_tasks(tasks: list) -> list:
        return run_stage(run.backend, "rollup", tasks, run_rollup,
                         where=lambda t: f"{t.channel} partition {t.partition}",
                         unit="partition", quiet=run.quiet, trace=run.trace)

    for level in sorted(stale):
        todo = list(dict.fromkeys(stale[level]))
        log.info("building %d rollup(s) of %d days", len(todo), level)
        ready.update(rollups.build(todo, sources, manifests, channels, spec, run_tasks, budget))
    return ready


def _damaged(exc: JobError, store: Any, present: list[dt.date]) -> dt.date | str | None:
    """The day, the rollup folder or the keys folder (:mod:`mapreduce.keying`) whose stored
    table a failed stage found damaged."""
    cause = exc.__cause__
    if not isinstance(cause, ChecksumError):
        return None
    text = str(cause)
    for day in present:
        if store.day_dir(day) + os.sep in text:
            return day
    for kind in ("rollup", "keys"):
        prefix = os.path.join(store.root, store.step, kind)
        at = text.find(prefix)
        if at >= 0:
            end = text.find(os.sep, at + len(prefix))
            if end > 0:
                return text[at:end]
    return None
