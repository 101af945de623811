"""Which window dates the watch daemon computes, decided from files alone (so a restart after
``kill -9`` reaches the same decision as the run that died).

    LOGS/listen-*.log ──scan──▶ {day: path}
        │  a target date is a day that has a log (and is >= --since)
        ▼
    target D ──window(D) holds a log still being written or unreadable?──▶ deferred
        │
        ▼  current when all hold:
    OUT/country_*_D.txt, user_*_D.txt, *_D.summary.json exist
    summary.days_used == the window's days that have a log now
    STORE/day-W/manifest.json names the log's present identity, for every used day W
    no such manifest is newer than the summary (W was not reduced again since)
        │
        ▼  else: stale, with the reason; computed oldest first

Identities (size, mtime, sampled fingerprint) are cached per file and re-read only when the
file's stat changes (ctime included, which no writer can set back), so a pass over a year of logs
costs a few stats per log, not reads.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any

import orjson

from mapreduce.fsutil import TEMP_MARK
from jobs.listens import log_date
from jobs.store import Store, source_identity
from jobs.topk import WindowJob


@dataclass(frozen=True)
class Stale:
    date: dt.date
    reason: str


def _stat_key(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def delivery_in_progress(name: str) -> bool:
    """A log on its way, not a stray: ``NAME.tmp``, written then renamed into place as the docs
    advise, or this project's own ``.NAME.tmp-PID-...`` temporaries."""
    return name.endswith(".tmp") or (name.startswith(".") and TEMP_MARK in name)


def scan_folder(folder: str) -> tuple[dict[dt.date, str], list[str]]:
    """Logs by day, and the other names in the folder (for the caller to report once)."""
    logs, others = {}, []
    for name in sorted(os.listdir(folder)):
        day = log_date(name)
        if day is None:
            others.append(name)
        else:
            logs[day] = os.path.join(folder, name)
    return logs, others


class Planner:
    def __init__(self, job: WindowJob, out: str, store: Store, since: dt.date | None) -> None:
        self.job, self.out, self.store, self.since = job, out, store, since
        self._identities: dict[str, tuple[tuple[int, ...], dict[str, Any]]] = {}
        self._manifests: dict[dt.date, tuple[tuple[int, ...], dict[str, Any] | None]] = {}
        #: path -> why it cannot be read now; the caller reports changes and retries
        self.unreadable: dict[str, str] = {}

    def forget(self, path: str) -> None:
        """Drop a cached identity (an event said the file changed)."""
        self._identities.pop(path, None)

    def identity(self, path: str) -> dict[str, Any] | None:
        """The log's identity, or None when it cannot be read (reason in ``unreadable``)."""
        try:
            st = os.stat(path)
            cached = self._identities.get(path)
            if cached and cached[0] == _stat_key(st):
                ident = cached[1]
            else:
                ident = source_identity(path)
                if _stat_key(os.stat(path)) == _stat_key(st):  # not caching a moving target
                    self._identities[path] = (_stat_key(st), ident)
        except OSError as exc:
            self.unreadable[path] = exc.strerror or str(exc)
            self._identities.pop(path, None)
            return None
        self.unreadable.pop(path, None)
        return ident

    def plan(self, logs: dict[dt.date, str],
             blocked: set[dt.date]) -> tuple[list[Stale], set[dt.date]]:
        """Stale target dates, oldest first, and the target dates deferred (a day of their window
        is ``blocked``: still being written, or unreadable)."""
        stale, deferred = [], set()
        for day in sorted(d for d in logs if self.since is None or d >= self.since):
            window = [w for w in self.job.window(day) if w in logs]
            idents = {w: None if w in blocked else self.identity(logs[w]) for w in window}
            if any(ident is None for ident in idents.values()):
                deferred.add(day)
                continue
            reason = self.staleness(day, idents)
            if reason:
                stale.append(Stale(day, reason))
        return stale, deferred

    def staleness(self, day: dt.date, idents: dict[dt.date, dict[str, Any]]) -> str | None:
        """Why the files of ``day`` must be computed again, or None when they are current."""
        names = self.job.output_names(day)
        try:
            for key in ("country", "user"):
                os.stat(os.path.join(self.out, names[key]))
            summary_path = os.path.join(self.out, names["summary"])
            summary_mtime = os.stat(summary_path).st_mtime_ns
            with open(summary_path, "rb") as f:
                summary = orjson.loads(f.read())
        except FileNotFoundError:
            return "no output files yet"
        except (OSError, orjson.JSONDecodeError):
            return "summary unreadable"
        used = sorted(idents)
        if summary.get("days_used") != [f"{w:%Y-%m-%d}" for w in used]:
            return "the days with a log in its window changed"
        for w in used:
            manifest, mtime = self._manifest(w)
            if (manifest is None or manifest.get("partitions") != self.store.partitions
                    or manifest.get("source", {}).get("identity") != idents[w]):
                return f"log of {w:%Y-%m-%d} is new or changed"
            if mtime > summary_mtime:
                return f"{w:%Y-%m-%d} was reduced again since"
        return None

    def _manifest(self, day: dt.date) -> tuple[dict[str, Any] | None, int]:
        path = os.path.join(self.store.day_dir(day), "manifest.json")
        try:
            st = os.stat(path)
        except OSError:
            return None, 0
        cached = self._manifests.get(day)
        if cached is None or cached[0] != _stat_key(st):
            # manifests are written atomically, so a stat then a read see one version or the
            # next; a newer one only makes the date look stale, never current by mistake
            cached = (_stat_key(st), self.store.manifest(day))
            self._manifests[day] = cached
        return cached[1], st.st_mtime_ns
