"""Windowed jobs: a per-input step cached in the store, then a window step over N days.

    INPUTS/listen-YYYYMMDD.log ──per-input step (map, combine, partition, reduce)──▶
        STORE/STEP/day-YYYYMMDD/       once per input; reused while the input is unchanged
    STORE/STEP/day-(D-N+1) .. day-D ──window tasks, one per (channel, partition)──▶
        (or rollups of aligned blocks of days and the days at the edges: mapreduce.rollup)
        window_combine ─▶ finalize ─▶ format, one key range at a time: lines of one
        partition, in key order (mapreduce.window)
    ──merge tasks, one per key range──▶ OUT/<one file per output channel>, OUT/<summary>.json

A job declares, and the framework plans, runs, checks and commits:

* ``steps()``: the :class:`PerInputStep` (an :class:`~mapreduce.job.ArrayJob`: the job itself,
  or the class named by ``per_input`` when several jobs share one cached step) and the
  :class:`WindowStep` (``days``);
* ``window_combine`` (how a group's rows of several days fold: a sum by default, or a union, a
  min...), ``finalize`` (what to keep: top K, a distinct count...) and ``format`` (the text);
* ``inputs`` (the dated name pattern) and ``output_names``.

A result is fresh by :meth:`mapreduce.store.Store.fresh_manifest`; a damaged one is computed
again, each day at most once per run. Everything runs under the store's lock; the output files
and the summary are committed together.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import orjson

from mapreduce.errors import JobError
from mapreduce.executors import Backend
from mapreduce.fsutil import atomic_writers, remove_stale_temps
from mapreduce.inputs import DatedInputs, check_folders, delivery_in_progress, window_days
from mapreduce.job import ArrayJob, JobSpec, Option, class_ref
from mapreduce.report import MemorySampler, StageClock
from mapreduce.runner import run_stage
from mapreduce.splits import DEFAULT_SPLIT_SIZE
from mapreduce.store import DEFAULT_PARTITIONS, Store
from mapreduce.trace import Trace
from mapreduce.sortedruns import DEFAULT_BUDGET
from mapreduce.windowstage import write_window

log = logging.getLogger(__name__)

#: rows (of all the window's tables) a window task combines at a time: one key range of its
#: partition (about 200 MB of working memory at this size)
MAX_WINDOW_ROWS = DEFAULT_BUDGET
#: missing days named in a warning at most; the summary lists them all
MAX_DAYS_NAMED = 10


@dataclass(frozen=True)
class PerInputStep:
    """Map, combine, partition and reduce over one input; its result is cached per day."""

    job: JobSpec
    name: str        # the store folder of its results


@dataclass(frozen=True)
class WindowStep:
    """Combine the cached results of the ``days`` days ending on a date, finalize, format."""

    days: int


class WindowJob(ArrayJob):
    """A job over dated inputs whose per-input results are cached and combined over a window.

    Subclasses set ``inputs`` and define ``format`` (and usually ``finalize``); the per-input
    step is this class's own ``map_block``/``combine``/``partition`` unless ``per_input`` names
    another ArrayJob class. Options marked ``per_input=True`` reach the per-input step too and
    are part of its cache's identity; the others (``days``, ...) never invalidate a cached day.
    """

    inputs: ClassVar[DatedInputs]
    #: the ArrayJob class of the per-input step, when it is not this class
    per_input: ClassVar[type[ArrayJob] | None] = None
    options: ClassVar[tuple[Option, ...]] = (
        Option("days", int, 7, "window length in days", minimum=1),)
    days: int

    # -- declared steps -----------------------------------------------------------------------
    def steps(self) -> tuple[PerInputStep, WindowStep]:
        cls = self.per_input or type(self)
        own = {o.name for o in self.options if o.per_input}
        params = tuple(sorted((k, v) for k, v in self.params().items() if k in own))
        name = cls.name if cls.name else cls.__name__.lower()
        return PerInputStep(JobSpec(class_ref(cls), params), name), WindowStep(self.days)

    @property
    def output_channels(self) -> tuple[str, ...]:
        """The channels written as files (all by default)."""
        return (self.per_input or type(self)).channels

    def output_names(self, day: dt.date) -> dict[str, str]:
        """File name per output channel, and ``"summary"``."""
        stem = f"{self.name}_{self.days}days_{day:%Y%m%d}"
        return {**{c: f"{c}_{stem}.txt" for c in self.output_channels},
                "summary": f"{stem}.summary.json"}

    def report_name(self, day: dt.date) -> str:
        """The run's page beside its outputs (the daemon writes one per date it computes)."""
        summary = self.output_names(day)["summary"]
        return summary.removesuffix(".summary.json").removesuffix(".json") + ".report.html"

    def window(self, end: dt.date) -> list[dt.date]:
        return window_days(end, self.days)

    # -- the window step ----------------------------------------------------------------------
    #: ``window_combine`` of partial ``window_combine`` results equals ``window_combine`` of
    #: all the days (a sum, a union, a min, a max; not a median): partial results of aligned
    #: blocks of days (``rollup_levels`` days each) may then be kept in the store and reused by
    #: every later window over them (see :mod:`mapreduce.rollup`). ``window_combine`` must then
    #: depend on nothing but the tables (no option of the window job). A window task then also
    #: folds a key range far above its budget (one group over months) a batch of tables at a
    #: time instead of holding them all; ``rollup_levels = ()`` keeps no blocks.
    rollups: ClassVar[bool] = False
    rollup_levels: ClassVar[tuple[int, ...]] = (8, 64)
    #: the columns that tell the rows of a per-input table apart (the group column first), for
    #: a job with rollups: then the days of each block of the top level whose last day is
    #: ``keyed_after`` days or more before a window's end are stored as row numbers into the
    #: block's table, a quarter of their size, ``keyed_per_run`` days a run at most (see
    #: :mod:`mapreduce.keying`); () keeps days whole
    row_keys: ClassVar[tuple[str, ...]] = ()
    keyed_after: ClassVar[int] = 14
    keyed_per_run: ClassVar[int] = 8

    def group_column(self, channel: str) -> str:
        """The column a window task cuts its key ranges by (rows of one group stay together).
        The per-input step's tables are best sorted by it (``sum_by_key`` and
        ``distinct_by_key`` are), so that they are streamed; an unsorted table is read whole."""
        return "group"

    def window_combine(self, channel: str, tables: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Fold the tables of one key range of one partition (of each day of the window, or of
        rollups); the per-input ``combine`` by default (a sum stays a sum)."""
        step = self.per_input() if self.per_input else self
        return step.combine(channel, tables)

    def finalize(self, channel: str, table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What to keep of the combined window (top K, a count...); everything by default."""
        return table

    def format(self, channel: str, table: dict[str, np.ndarray]) -> tuple[np.ndarray, bytes]:
        """``(keys, text)``: one line per group in key order, and each line's unsigned key (the
        order in which the partitions' lines are merged). Called once per key range, in
        increasing key order."""
        raise NotImplementedError


@dataclass(frozen=True)
class Ops:
    """What an operator sets on a windowed run: ``allow_links`` (read inputs that resolve
    outside their folder), ``recompute`` (days reduced again whatever the store holds;
    ``"all"``: every day of the window), ``samples`` (keep corrupt-line samples),
    ``retention`` (what is removed after success), ``check_space`` (refuse to start without
    room for what the run writes)."""

    allow_links: bool = False
    recompute: frozenset[dt.date] | str = frozenset()
    samples: bool = True
    retention: Any = None
    check_space: bool = True

    def __post_init__(self) -> None:
        if self.retention is None:
            from mapreduce.retention import Retention

            object.__setattr__(self, "retention", Retention())


@dataclass(frozen=True)
class WindowRun:
    """Where and how a windowed job runs."""

    inputs: str
    out: str
    store: str
    backend: Backend
    partitions: int = DEFAULT_PARTITIONS
    split_size: int = DEFAULT_SPLIT_SIZE
    quiet: bool = True
    trace: Trace = field(default_factory=Trace)


def run_window_job(job: WindowJob, logs: str, out: str, backend: Backend, *,
                   date: dt.date | None = None, store: str | None = None, strict: bool = False,
                   quiet: bool = True, wait: bool = True, partitions: int = DEFAULT_PARTITIONS,
                   split_size: int = DEFAULT_SPLIT_SIZE, job_ref: str | None = None,
                   html_report: str | None = None, ops: Ops | None = None) -> dict[str, Any]:
    """Compute the window ending on ``date`` (default: the newest input) and write its files.

    ``job_ref`` is how workers import the job (default: its class's module and name);
    ``html_report``, a page of the run: every task on a timeline, memory, the days; ``ops``,
    what an operator sets: links, recomputed days, samples, retention (see :class:`Ops`)."""
    from mapreduce import retention

    ops = ops or Ops()
    job_ref = job_ref or class_ref(type(job))
    store = store or os.path.join(out, "store")
    check_folders(logs, out, store)
    scan = job.inputs.survey(logs, allow_links=ops.allow_links)
    found, others = scan.found, scan.others
    for name in others:
        if delivery_in_progress(name):
            log.debug("ignoring %s until it is renamed into place", os.path.join(logs, name))
        else:
            log.warning(job.inputs.ignored_message(os.path.join(logs, name)))
    if not found and not scan.refused:
        raise JobError(f"no {job.inputs.describe()} file in {logs}")
    end = date or max({*found, *scan.refused})
    days = job.window(end)
    for day, why in scan.refused.items():
        if day in days:
            raise JobError(why)
        # "ignoring ...": the daemon's once-filter keeps it to one line, not one per run
        log.warning("ignoring the log of %s (not in this window): %s", f"{day:%Y-%m-%d}", why)
    present = [d for d in days if d in found]
    missing = [d for d in days if d not in found]
    if not present:
        raise JobError(f"no log in the window {days[0]:%Y-%m-%d} .. {end:%Y-%m-%d} in {logs}")
    if missing:
        listed = _some_days(missing)
        if strict:
            raise JobError(f"--strict: {len(missing)} day(s) missing from the window: {listed}; "
                           "no files written")
        log.warning("%d day(s) missing from the window ending %s: %s; computing from the %d "
                    "present", len(missing), f"{end:%Y-%m-%d}", listed, len(present))
    per_input, _ = job.steps()
    spec = JobSpec(job_ref, tuple(sorted(job.params().items())))
    run = WindowRun(logs, out, store, backend, partitions, split_size, quiet)
    store_obj = Store(store, partitions, step=per_input.name, samples=ops.samples)
    clock = StageClock()
    started = time.time()
    names = job.output_names(end)
    channels = job.output_channels
    paths = [os.path.join(out, names[k]) for k in (*channels, "summary")]
    # The files are one result: written under the lock (a concurrent run's set never mixes
    # with ours) and committed together (a failure while writing any leaves all as they were).
    with store_obj.locked(wait), MemorySampler() as memory:
        remove_stale_temps(out)
        days_cached = _DayResults(store_obj, per_input, run, found, ops.recompute)
        if ops.check_space:
            retention.check_free_space(store_obj.root, out, retention.estimate_bytes(
                [found[d] for d in present if days_cached.to_reduce(d)], job, out))
        with clock.stage("daily"):
            for d in present:
                days_cached.ensure(d)
        with atomic_writers(paths) as (*channel_files, summary_file):
            lines = write_window(job, spec, channels, days_cached, present, run,
                                 dict(zip(channels, channel_files)), names["summary"], clock,
                                 MAX_WINDOW_ROWS)
            summary = {
                "job": job_ref, "params": job.params(),
                "window": {"first": f"{days[0]:%Y-%m-%d}", "last": f"{end:%Y-%m-%d}",
                           "days": job.days},
                **_legacy_fields(job),
                "days_used": [f"{d:%Y-%m-%d}" for d in present],
                "days_missing": [f"{d:%Y-%m-%d}" for d in missing],
                "days": {f"{d:%Y-%m-%d}": info for d, info in days_cached.info.items()},
                "corrupt_lines": {f"{d:%Y-%m-%d}": info["corrupt_lines"]
                                  for d, info in days_cached.info.items()},
                "input_lines_read": sum(i["lines_read"] for i in days_cached.info.values()),
                "output_lines": lines,
                "task_attempts": _attempts(run.trace),
                "files": {k: os.path.join(os.path.abspath(out), v) for k, v in names.items()},
                "store": store_obj.root,
                "stage_seconds": clock.seconds,
                "wall_seconds": round(time.time() - started, 4),
                "peak_rss_bytes": memory.peak,
                **backend.describe(),
            }
            summary_file.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
        samples = memory.samples
        keyed = bool(job.rollups and job.row_keys and job.rollup_levels)
        if keyed:
            _key_days(job, spec, days_cached, end, run)
        summary["removed"] = retention.apply(ops.retention, job, store_obj, out, end, days)
        if keyed:  # after retention: the days it removed may have been the last to use some
            from mapreduce.keying import remove_unused_keys
            remove_unused_keys(store_obj)
    if html_report:
        _write_html(html_report, job, summary, days_cached, run.trace, samples, started)
    return summary


def _key_days(job: WindowJob, spec: JobSpec, days: "_DayResults", end: dt.date,
              run: WindowRun) -> None:
    """Store the window's old days keyed against their blocks (the files are written: a
    failure here leaves each day keyed or whole, and is only reported)."""
    from mapreduce.keying import key_days, run_keying

    def run_tasks(tasks: list) -> list:
        return run_stage(run.backend, "keying", tasks, run_keying,
                         where=lambda t: f"{t.channel} partition {t.partition}",
                         unit="partition", quiet=run.quiet, trace=run.trace)

    started = time.perf_counter()
    try:
        keyed = key_days(job, spec, days.store, days.manifests, end, run_tasks, MAX_WINDOW_ROWS)
    except Exception as exc:  # the files are committed: what failed here is only reported
        log.warning("could not store the days of %s keyed against their blocks (%s: %s); "
                    "they stay whole", days.store.root, type(exc).__name__, exc)
        return
    if keyed:
        log.info("stored %d day(s) keyed against their blocks (%s .. %s) in %.1f s", len(keyed),
                 f"{keyed[0]:%Y-%m-%d}", f"{keyed[-1]:%Y-%m-%d}", time.perf_counter() - started)


def _write_html(path: str, job: WindowJob, summary: dict[str, Any], days: _DayResults,
                trace: Trace, memory: list[tuple[float, int]], started: float) -> None:
    from mapreduce.html_report import run_for_report, write_report_html
    from mapreduce.runner import DEFAULT_MEMORY_BUDGET

    rows = []
    for day, info in days.info.items():
        manifest = days.manifests[day]
        rows.append({"day": f"{day:%Y-%m-%d}", "lines": info["lines"],
                     "corrupt_lines": info["corrupt_lines"], "corrupt_by_kind": None,
                     "seconds": info["seconds"], "cached": info["cached"],
                     "samples": manifest.get("corrupt_samples", [])})
    write_report_html(path, run_for_report(
        title=f"{type(job).__name__}: window {summary['window']['first']} .. "
              f"{summary['window']['last']}", params=job.params(), describe=summary,
        started=started, wall=time.time() - started, trace=trace.to_json(), memory=memory,
        days=rows, cached_days=[r["day"] for r in rows if r["cached"]],
        budget=DEFAULT_MEMORY_BUDGET * max(1, int(summary.get("workers") or 1))))


def _attempts(trace: Trace) -> dict[str, Any]:
    """Task attempts per stage and outcome, and the processes that ran them."""
    per: dict[str, dict[str, int]] = {}
    for e in trace.events:
        per.setdefault(e.stage, {}).setdefault(e.outcome, 0)
        per[e.stage][e.outcome] += 1
    return {"by_stage": per, "workers": sorted({e.worker for e in trace.events if e.worker})}


def _legacy_fields(job: WindowJob) -> dict[str, Any]:
    """Options at the summary's top level too (``top``), as summaries before steps had them."""
    return {k: v for k, v in job.params().items() if k != "days"}


def _some_days(days: list[dt.date]) -> str:
    shown = ", ".join(f"{d:%Y-%m-%d}" for d in days[:MAX_DAYS_NAMED])
    more = len(days) - MAX_DAYS_NAMED
    return shown + (f" and {more} more (all listed in the summary)" if more > 0 else "")


class _DayResults:
    """The window's days in the store: each computed unless fresh, its verified manifest kept
    (the window reads its tables from that, never from a second reading)."""

    def __init__(self, store: Store, step: PerInputStep, run: WindowRun,
                 found: dict[dt.date, str], recompute: frozenset[dt.date] | str = frozenset()
                 ) -> None:
        self.store, self.step, self.run, self.found = store, step, run, found
        self.recompute = recompute
        self.manifests: dict[dt.date, dict[str, Any]] = {}
        self.info: dict[dt.date, dict[str, Any]] = {}

    def ensure(self, day: dt.date) -> None:
        path = self.found[day]
        if not os.path.isfile(path):
            raise JobError(f"cannot read log {path}: not a regular file")
        if not os.access(path, os.R_OK):
            raise JobError(f"cannot read log {path}: permission denied")
        started = time.perf_counter()
        # read once: what is checked is used; a day asked to be recomputed is, once a run
        manifest = (None if self._forced(day)
                    else self.store.fresh_manifest(day, path, self.step.job))
        cached = manifest is not None
        if manifest is None:
            log.info("reducing %s", path)
            try:
                manifest = self.store.reduce(self.step.job, day, path, self.run.backend,
                                             split_size=self.run.split_size, quiet=self.run.quiet,
                                             trace=self.run.trace)
            except JobError as exc:
                exc.step = exc.step or "per-input"
                raise
        self.manifests[day] = manifest
        self.info[day] = {
            "log": path, "cached": cached, "lines": manifest["lines"],
            "lines_read": 0 if cached else manifest["lines"],
            "corrupt_lines": manifest["corrupt_lines"],
            "identity": manifest["source"]["identity"],
            "corrupt_samples": os.path.join(self.store.day_dir(day), "manifest.json"),
            "seconds": round(time.perf_counter() - started, 4)}

    def _forced(self, day: dt.date) -> bool:
        return (self.recompute == "all" or day in self.recompute) and day not in self.manifests

    def to_reduce(self, day: dt.date) -> bool:
        """Whether ``ensure`` will reduce the day (for the free-space estimate)."""
        return self._forced(day) or self.store.day_state(day, self.found[day]).state != "cached"

    def redo(self, day: dt.date) -> None:
        self.store.discard(day)
        self.ensure(day)
