"""The watch daemon's loop: events in, one window run at a time out.

    LOGS ──watchdog events──▶ Arrivals (is the log complete yet?) ──ready/gone──┐
      │                                                                        ▼
      └──scan at start and after each change──▶ Planner: stale dates, oldest first
                                                   │ one at a time
                                                   ▼
          DateRuns (jobs.watch_run): run_window_job(date=D)  (store lock; atomic files in
                          OUT), a failed date retried after --retry-seconds, metrics
                                                   │
                                                   ▼
                          OUT/country_top50_D.txt, user_top50_D.txt, top50_D.summary.json

Everything runs on the main thread but the observer, which only queues events; so signals, the
store and the planner's caches need no locking. SIGTERM or SIGINT: no more work; a run in
progress is cancelled by an exception raised from the handler (the engine cleans up on any
BaseException), and the daemon returns 0.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import shutil
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from mapreduce.errors import JobError
from mapreduce.executors import Backend
from mapreduce.fsutil import TEMP_MARK, remove_stale_temps
from mapreduce.inputs import delivery_in_progress
from mapreduce.splits import DEFAULT_SPLIT_SIZE
from mapreduce.store import DEFAULT_PARTITIONS, LockBusy, Store
from mapreduce.windowed import Ops, WindowJob
from jobs.watch_events import Arrivals, Change, start_observer
from jobs.watch_log import fields as _fields
from jobs.watch_plan import Planner, Stale
from jobs.watch_run import DateRuns, Stop

log = logging.getLogger("jobs.watch")  # the command's name, in every line it logs

TICK = 0.25          # seconds between looks at the stop flag while idle
IDLE_CHECK = 5.0     # seconds between looks at the logs folder itself while nothing happens
HOW = {"moved_in": "renamed into place", "closed": "closed by its writer",
       "attrib": "permissions or times changed", "settled": "unchanged for the quiet period"}


@dataclass
class WatchConfig:
    logs: str
    out: str
    store: str
    job: WindowJob
    job_ref: str
    quiet_period: float = 10.0
    retry_seconds: float = 30.0
    since: dt.date | None = None
    no_wait: bool = False
    polling: bool = False
    partitions: int = DEFAULT_PARTITIONS
    split_size: int = DEFAULT_SPLIT_SIZE
    ops: Ops = field(default_factory=Ops)
    metrics_file: str | None = None


def _file_key(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def remove_own_temps(folder: str) -> None:
    """Temporary names carry the writer's pid, and the cleaner spares live pids, ours included;
    outside a run, any temporary file with our pid is garbage (a cancelled cleanup, or a dead
    earlier process that had the same pid)."""
    mark = f"{TEMP_MARK}{os.getpid()}-"
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    for name in names:
        if name.startswith(".") and mark in name:
            path = os.path.join(folder, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass


class Daemon:
    def __init__(self, cfg: WatchConfig, backend: Backend) -> None:
        self.stopping = False
        self.in_run = False
        self._cancelled = False
        # first of all: from here on a signal stops the daemon between two steps
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.cfg, self.backend = cfg, backend
        self.store = Store(cfg.store, cfg.partitions, step=cfg.job.steps()[0].name)
        self.runs = DateRuns(self)
        self.planner = Planner(cfg.job, cfg.out, self.store, cfg.since,
                               cfg.ops.retention.keep_outputs)
        self.changes: queue.Queue[Change] = queue.Queue()
        self.reported_unreadable: dict[str, str] = {}
        self.deferred: set[dt.date] = set()
        self._news = False  # a log became complete or went away since the last plan
        #: name -> (inode, size, mtime) when last seen complete: a log found otherwise at a scan
        #: changed after that, its event not yet taken, so it is pending, not used
        self.complete: dict[str, tuple[int, int, int]] = {}
        self._folder_id: tuple[int, int] | None = None

    # -- signals ---------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        # no logging here: the interrupted code may hold the logging lock
        self.stopping = True
        if self.in_run and not self._cancelled:
            self._cancelled = True
            raise Stop(signal.Signals(signum).name)

    # -- lifecycle -------------------------------------------------------------------------
    def run(self) -> int:
        self._start_clean()
        st = os.stat(self.cfg.logs)  # the folder the watch will be on (see _check_folder)
        self._folder_id = (st.st_dev, st.st_ino)
        # watch first, then scan: a log arriving in between is seen by one or the other
        observer, close_events = start_observer(self.cfg.logs, self.changes,
                                                polling=self.cfg.polling)
        self.arrivals = Arrivals(self.cfg.logs, self.cfg.quiet_period, close_events)
        log.info("watching %s: window %d days, top %d, out %s, store %s, %s, %s",
                 self.cfg.logs, self.cfg.job.days, self.cfg.job.top, self.cfg.out,
                 self.store.root, type(observer).__name__,
                 "close events" if close_events else f"quiet period {self.cfg.quiet_period:g}s",
                 extra=_fields(event="start", pid=os.getpid(), **self.backend.describe()))
        try:
            self._scan_existing()
            self._loop()
            log.info("stopping on a signal", extra=_fields(event="stop"))
        except Stop as stop:
            log.info("stopping on %s: the run in progress was cancelled", stop,
                     extra=_fields(event="stop", cancelled=True))
        finally:
            observer.stop()
            observer.join(timeout=10)
            # the step's folder too: a run cancelled between making a scratch folder there and
            # entering its cleanup (a signal can land between any two bytecodes) leaves it
            for folder in (self.cfg.out, self.store.root,
                           os.path.join(self.store.root, self.store.step)):
                remove_own_temps(folder)
        return 0

    def _start_clean(self) -> None:
        for folder in (self.cfg.out, self.store.root):
            remove_own_temps(folder)
        try:
            with self.store.locked(wait=False):  # also clears dead runs' temporaries in STORE
                remove_stale_temps(self.cfg.out)
        except LockBusy as exc:
            if self.cfg.no_wait:
                raise JobError(f"--no-wait: {str(exc).split(';')[0]}; not starting") from None
            log.info("%s; each run waits for it", str(exc).split(";")[0],
                     extra=_fields(event="lock_wait"))

    def _survey(self) -> tuple[dict[dt.date, str], list[str], dict[dt.date, tuple[str, str]]]:
        """Logs by day, other names, and refused days (day -> (path, why)): a day given twice
        or a log resolving outside the folder waits, reported, like an unreadable log."""
        scan = self.cfg.job.inputs.survey(self.cfg.logs, allow_links=self.cfg.ops.allow_links)
        refused = {d: (os.path.join(self.cfg.logs, self.cfg.job.inputs.name_of(d)), why)
                   for d, why in scan.refused.items()}
        return scan.found, scan.others, refused

    def _scan_existing(self) -> None:
        logs, others, _ = self._survey()
        for name in others:
            self._ignore(name)
        for path in logs.values():
            name = os.path.basename(path)
            if self.arrivals.add_existing(name):
                log.info("%s changed within the last %gs; waiting until it stays unchanged",
                         path, self.cfg.quiet_period, extra=_fields(event="pending", log=name))
            else:
                self._seen_complete(name)

    def _seen_complete(self, name: str) -> None:
        key = _file_key(os.path.join(self.cfg.logs, name))
        if key is not None:
            self.complete[name] = key

    def _check_folder(self) -> None:
        """The watch is on the folder's inode: if the folder is removed or replaced, no event
        will ever come again. Exit (1) so that a supervisor restarts on the new folder."""
        try:
            st = os.stat(self.cfg.logs)
            same = (st.st_dev, st.st_ino) == self._folder_id
        except OSError:
            same = False
        if not same:
            raise JobError(f"logs folder {self.cfg.logs} was removed or replaced; exiting so "
                           "that a restart watches it again")

    # -- main loop -------------------------------------------------------------------------
    def _loop(self) -> None:
        todo: list[Stale] = []
        dirty, idle_said = True, False  # dirty at start: the catch-up
        while not self.stopping:
            busy = bool(todo) or dirty
            if not busy and not idle_said:  # said before waiting, so a reader knows we wait
                idle_said = True
                retry = sorted(f"{d:%Y-%m-%d}" for d in self.runs.retry_at)
                log.info("waiting for logs; %d date(s) wait for a log to be complete or "
                         "readable, %d failed date(s) to retry", len(self.deferred), len(retry),
                         extra=_fields(event="idle", retry=retry, deferred=sorted(
                             f"{d:%Y-%m-%d}" for d in self.deferred)))
            dirty |= self._take_changes(0.0 if busy else self._idle_wait())
            if self.stopping:
                break
            if dirty:
                todo, dirty = self._plan(), False
                if self._news:  # one "up to date" line per batch of changes, not per retry
                    idle_said, self._news = False, False
            if todo:
                self.runs.run(todo.pop(0))
                idle_said = False

    def _idle_wait(self) -> float:
        waits = [IDLE_CHECK]
        settle = self.arrivals.next_check()
        if settle is not None:
            waits.append(settle)
        if self.runs.next_retry is not None:
            waits.append(self.runs.next_retry - time.monotonic())
        return max(0.0, min(waits))

    def _take_changes(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for events, take all queued; True when a plan is due."""
        end = time.monotonic() + timeout
        due = False
        while not self.stopping:
            try:
                change = self.changes.get(timeout=min(TICK, max(0.0, end - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= end:
                    break
                continue
            due |= self._on_change(change)
            end = 0.0  # something arrived: take whatever else is queued, then act
        for name, outcome in self.arrivals.poll():
            due |= self._report(Change("settled", name), outcome)
        if self.runs.next_retry is not None and time.monotonic() >= self.runs.next_retry:
            self.runs.next_retry, due = None, True
        self._check_folder()
        return due

    def _on_change(self, change: Change) -> bool:
        if self.cfg.job.inputs.date_of(change.name) is None:
            self._ignore(change.name)
            return False
        self.planner.forget(os.path.join(self.cfg.logs, change.name))
        return self._report(change, self.arrivals.note(change))

    def _report(self, change: Change, outcome: str | None) -> bool:
        path = os.path.join(self.cfg.logs, change.name)
        fields = _fields(event=outcome, log=change.name, how=change.kind)
        if outcome == "pending":
            log.info("%s is being written; waiting until it is complete", path, extra=fields)
        elif outcome == "ready":
            log.info("%s is complete (%s)", path, HOW.get(change.kind, change.kind), extra=fields)
        elif outcome == "gone":
            log.info("%s is gone", path, extra=fields)
        if outcome == "ready":
            self._seen_complete(change.name)
        elif outcome == "gone":
            self.complete.pop(change.name, None)
        if outcome in ("ready", "gone"):
            self.runs.retry_at.clear()  # news: failed dates may succeed now
            self._news = True
            return True
        return False

    def _ignore(self, name: str) -> None:
        # the run's wording, so the once-filter merges the two
        if delivery_in_progress(name):
            log.debug("ignoring %s until it is renamed into place: a delivery in progress",
                      os.path.join(self.cfg.logs, name), extra=_fields(event="delivering",
                                                                        name=name))
            return
        log.warning(self.cfg.job.inputs.ignored_message(os.path.join(self.cfg.logs, name)),
                    extra=_fields(event="ignored", name=name))

    # -- planning and running --------------------------------------------------------------
    def _plan(self) -> list[Stale]:
        try:
            logs, others, refused = self._survey()
        except OSError as exc:
            self._retry_later(f"cannot list {self.cfg.logs}: {exc.strerror or exc}")
            return []
        for name in others:
            self._ignore(name)
        for path in logs.values():
            name = os.path.basename(path)
            key = _file_key(path)
            if name not in self.arrivals.pending and key and self.complete.get(name) != key:
                self.arrivals.suspect(name)
                log.info("%s changed with no event seen yet; waiting until it is complete", path,
                         extra=_fields(event="pending", log=name, how="scan"))
        blocked = {d for d in map(self.cfg.job.inputs.date_of, self.arrivals.pending)
                   if d is not None}
        stale, self.deferred = self.planner.plan(logs, blocked, refused)
        present = set(logs.values()) | {path for path, _ in refused.values()}
        for path in [p for p in self.planner.unreadable if p not in present]:
            del self.planner.unreadable[path]
        self._report_unreadable()
        now = time.monotonic()
        waiting = [self.runs.retry_at[s.date] for s in stale if self.runs.retry_at.get(s.date, 0.0) > now]
        if waiting:  # the retry that fired may have come before these were due: look again then
            self.runs.next_retry = min(self.runs.next_retry or min(waiting), min(waiting))
        return [s for s in stale if self.runs.retry_at.get(s.date, 0.0) <= now]

    def _report_unreadable(self) -> None:
        for path, reason in self.planner.unreadable.items():
            if self.reported_unreadable.get(path) != reason:
                log.warning("cannot read %s: %s; the dates whose window holds it wait; retrying "
                            "every %gs", path, reason, self.cfg.retry_seconds,
                            extra=_fields(event="unreadable", log=os.path.basename(path),
                                          reason=reason))
        for path in set(self.reported_unreadable) - set(self.planner.unreadable):
            log.info("%s can be read again", path,
                     extra=_fields(event="readable", log=os.path.basename(path)))
        self.reported_unreadable = dict(self.planner.unreadable)
        if self.planner.unreadable:
            self._retry_later(None)

    def _retry_later(self, message: str | None, day: dt.date | None = None) -> None:
        self.runs.retry_later(message, day)
