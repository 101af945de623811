"""Which window dates the watch daemon computes, decided from files alone (so a restart after
``kill -9`` reaches the same decision as the run that died).

    LOGS/listen-*.log ──job.inputs.scan──▶ {day: path}
        │  a target date is a day that has a log (and is >= --since)
        ▼
    target D ──window(D) holds a log still being written or unreadable?──▶ deferred
        │
        ▼  current when all hold:
    OUT/country_*_D.txt, user_*_D.txt, *_D.summary.json exist
    summary.days_used == the window's days that have a log now
    STORE/STEP/day-W/manifest.json is fresh for the log as it is now (Store.is_fresh, the
        rule the run itself applies), for every used day W
    no such manifest is newer than the summary (W was not reduced again since)
    (a day that retention removed from the store: the summary's record of its log's identity
    stands in for its manifest)
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

from mapreduce.store import Store, source_identity
from mapreduce.windowed import WindowJob


@dataclass(frozen=True)
class Stale:
    date: dt.date
    reason: str


def _stat_key(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Planner:
    def __init__(self, job: WindowJob, out: str, store: Store, since: dt.date | None,
                 keep_outputs: int | None = None) -> None:
        self.job, self.out, self.store, self.since = job, out, store, since
        #: only the newest dates are targets when older outputs are not kept (else every run's
        #: retention would remove what the next plan computes again)
        self.keep_outputs = keep_outputs
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

    def plan(self, logs: dict[dt.date, str], blocked: set[dt.date],
             refused: dict[dt.date, tuple[str, str]] | None = None
             ) -> tuple[list[Stale], set[dt.date]]:
        """Stale target dates, oldest first, and the target dates deferred (a day of their window
        is ``blocked``: still being written, or unreadable, or ``refused``: day -> (path, why))."""
        refused = refused or {}
        for path, why in refused.values():
            self.unreadable[path] = why
        stale, deferred = [], set()
        targets = sorted(d for d in {*logs, *refused} if self.since is None or d >= self.since)
        if self.keep_outputs is not None:
            targets = targets[-self.keep_outputs:]
        for day in targets:
            window = [w for w in self.job.window(day) if w in logs or w in refused]
            if any(w in refused for w in window):
                deferred.add(day)
                continue
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
            for key in self.job.output_channels:
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
            if manifest is None and not os.path.isdir(self.store.day_dir(w)):
                # removed by retention: the identity the summary recorded for it stands in
                recorded = summary.get("days", {}).get(f"{w:%Y-%m-%d}", {}).get("identity")
                if recorded is not None and recorded == idents[w]:
                    continue
            if not self.store.is_fresh(manifest, idents[w], self.store.partitions):
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
