"""The watch daemon's runs: one date computed at a time, a failed date retried later, and the
metrics file written after each run. The daemon (jobs.watch_daemon) decides what to run and
when; this says how a run goes and what follows it.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from mapreduce.errors import JobError, UsageError
from mapreduce.metrics import write_metrics
from mapreduce.store import LockBusy
from mapreduce.windowed import run_window_job
from jobs.watch_log import fields as _fields
from jobs.watch_plan import Stale

if TYPE_CHECKING:
    from jobs.watch_daemon import Daemon

log = logging.getLogger("jobs.watch")
LOCK_POLL = 0.5      # seconds between tries of a store lock another job holds


class Stop(BaseException):
    """Raised once, by the signal handler, into a run in progress: cancels it. A BaseException,
    so the engine's ``except Exception`` paths pass it on after their cleanup."""


class DateRuns:
    """Runs of the daemon's dates, and the failed ones' retry times."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.cfg, self.backend, self.store = daemon.cfg, daemon.backend, daemon.store
        self.retry_at: dict[dt.date, float] = {}     # failed dates wait until then
        self.next_retry: float | None = None         # when to look again at failures

    def retry_later(self, message: str | None, day: dt.date | None = None) -> None:
        at = time.monotonic() + self.cfg.retry_seconds
        if day is not None:
            self.retry_at[day] = at
        self.next_retry = min(self.next_retry or at, at)
        if message:
            log.error("%s; retrying in %gs", message, self.cfg.retry_seconds,
                      extra=_fields(event="failed", date=day and f"{day:%Y-%m-%d}",
                                    error=message))


    def run(self, item: Stale) -> None:
        started = time.monotonic()
        try:
            summary = self._attempt(item.date)
        except (JobError, UsageError, OSError) as exc:
            return self._failed(item.date, str(exc) if not isinstance(exc, OSError) else
                                f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        except Exception as exc:  # noqa: BLE001 - a bug must not end the daemon; logged whole
            log.exception("run of %s failed unexpectedly", item.date)
            return self._failed(item.date, f"{type(exc).__name__}: {exc}")
        self.retry_at.pop(item.date, None)
        self._metrics(summary)
        fresh = [info for info in summary["days"].values() if not info["cached"]]
        files = [os.path.basename(p) for p in summary["files"].values()]
        day = f"{item.date:%Y-%m-%d}"
        lines_read = summary["input_lines_read"]
        corrupt = sum(info["corrupt_lines"] for info in fresh)
        seconds = time.monotonic() - started
        log.info("computed %s in %.2fs (%s): %d lines read, %d corrupt, wrote %s", day, seconds,
                 item.reason, lines_read, corrupt, " ".join(files), extra=_fields(
                     event="run", date=day, seconds=round(seconds, 3), reason=item.reason,
                     lines_read=lines_read, corrupt_lines=corrupt,
                     window_corrupt_lines=sum(summary["corrupt_lines"].values()),
                     days_reduced=[d for d, i in summary["days"].items() if not i["cached"]],
                     files=files))

    def _attempt(self, day: dt.date) -> dict[str, Any]:
        """One run for ``day``, waiting (interruptibly) for a store lock another job holds."""
        self.daemon.in_run = True
        try:
            if self.daemon.stopping:  # a signal came just before: do not start
                raise Stop("signal")
            said = False
            while True:
                try:
                    return run_window_job(self.cfg.job, self.cfg.logs, self.cfg.out,
                                          self.backend, date=day, store=self.store.root,
                                          quiet=True, wait=False, partitions=self.cfg.partitions,
                                          split_size=self.cfg.split_size, job_ref=self.cfg.job_ref,
                                          ops=self.cfg.ops, html_report=os.path.join(
                                              self.cfg.out, self.cfg.job.report_name(day)))
                except LockBusy as exc:
                    # polled, not a blocking flock: a signal must be able to stop the wait
                    if not said:
                        said = True
                        log.info("%s; waiting for it", str(exc).split(";")[0],
                                 extra=_fields(event="lock_wait", date=f"{day:%Y-%m-%d}"))
                    time.sleep(LOCK_POLL)
        finally:
            self.daemon.in_run = False

    def _failed(self, day: dt.date, message: str) -> None:
        try:
            self.backend.renew()  # a failed stage shut the pool down
        except Exception as exc:  # noqa: BLE001
            log.warning("could not restart the workers: %s", exc)
        self.retry_later(f"run of {day:%Y-%m-%d} failed: {message}", day)
        self._metrics(None)

    def _metrics(self, summary: dict[str, Any] | None) -> None:
        """The metrics file after each run, with the daemon's own gauges."""
        if not self.cfg.metrics_file:
            return
        try:
            write_metrics(self.cfg.metrics_file, "watch", summary=summary,
                          store=self.store.root, out=self.cfg.out, extra={
                              "watch_dates_to_retry": ("Failed dates the daemon will retry",
                                                       len(self.retry_at)),
                              "watch_dates_deferred": ("Dates waiting for a log to be complete "
                                                       "or readable", len(self.daemon.deferred))})
        except OSError as exc:  # monitoring must not stop the daemon; said once per failure
            log.warning("cannot write %s: %s", self.cfg.metrics_file, exc.strerror or exc)
