"""File events for the watch daemon, and the rule for when a log file is complete.

    watchdog observer thread ──Change(kind, name)──▶ queue.Queue ──▶ daemon (main thread)
                                                                    │
                                                  Arrivals.note() / Arrivals.poll()
                                                                    ▼
                                    "ready" (complete), "gone", or still pending

A log is complete when:
  * it was renamed into the folder (``mv listen-X.log.tmp listen-X.log``, or from another folder
    of the same filesystem): at once;
  * it was written in place and its writer closed it (inotify close-write, Linux only);
  * it appeared with nothing written to it (a hard link) and stayed unchanged for the quiet
    period, since no close event will follow;
  * where there are no close events (polling, macOS, Windows), for a file already there at
    start that changed within the quiet period, or for one found changed with no event seen:
    once its size and mtime stay unchanged for the quiet period.
While a log is pending, every date whose window holds it waits, so a half-written log is never
reduced and cached.
"""
from __future__ import annotations

import os
import queue
import stat
import time
from dataclasses import dataclass

from watchdog.events import (FileClosedEvent, FileCreatedEvent, FileDeletedEvent,
                             FileModifiedEvent, FileMovedEvent, FileSystemEvent,
                             FileSystemEventHandler)
from watchdog.observers.api import BaseObserver


@dataclass(frozen=True)
class Change:
    kind: str  # created | modified | closed | moved_in | gone | attrib
    name: str  # base name in the watched folder


class _Handler(FileSystemEventHandler):
    """Runs on the observer thread: only translates and queues, never touches daemon state."""

    def __init__(self, folder: str, changes: queue.Queue[Change]) -> None:
        self.folder = os.path.realpath(folder)
        self.changes = changes

    def _put(self, kind: str, path: str | bytes | None) -> None:
        if not path:  # an unmatched move has "" (None in old watchdog) for the unseen side
            return
        path = os.fsdecode(path)
        if os.path.dirname(os.path.realpath(path)) == self.folder:
            self.changes.put(Change(kind, os.path.basename(path)))

    def dispatch(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        if isinstance(event, FileMovedEvent):
            self._put("gone", event.src_path)
            self._put("moved_in", event.dest_path)
        elif isinstance(event, FileClosedEvent):
            self._put("closed", event.src_path)
        elif isinstance(event, FileCreatedEvent):
            self._put("created", event.src_path)
        elif isinstance(event, FileModifiedEvent):
            self._put("modified", event.src_path)
        elif isinstance(event, FileDeletedEvent):
            self._put("gone", event.src_path)
        elif event.event_type == "attrib":  # chmod may make an unreadable log readable
            self._put("attrib", event.src_path)


def start_observer(folder: str, changes: queue.Queue[Change], *,
                   polling: bool = False) -> tuple[BaseObserver, bool]:
    """Watch ``folder`` (not its subfolders); returns the observer and whether it reports
    close-write events."""
    observer: BaseObserver | None = None
    close_events = False
    if not polling:
        try:
            # generate_full_events: a move from another folder is a move (complete at once),
            # not a "created" that would have to wait out the quiet period
            from watchdog.observers.inotify import InotifyObserver

            observer, close_events = InotifyObserver(generate_full_events=True), True
        except Exception:  # noqa: BLE001 - not Linux, or no inotify: the platform's best
            from watchdog.observers import Observer

            observer = Observer()
    if observer is None:
        from watchdog.observers.polling import PollingObserver

        observer = PollingObserver(timeout=1)
    observer.schedule(_Handler(folder, changes), folder, recursive=False)
    observer.start()
    return observer, close_events


@dataclass
class _Pending:
    since: float                       # monotonic time of the last change seen
    snapshot: tuple[int, int] | None   # (size, mtime_ns) then
    writer_open: bool = False          # inotify saw a write: only the close completes it
    how: str = "quiet"                 # "quiet": stable for the quiet period; "link": see above


class Arrivals:
    """Tracks pending log files of one folder and says when each is complete."""

    def __init__(self, folder: str, quiet_period: float, close_events: bool) -> None:
        self.folder, self.quiet_period, self.close_events = folder, quiet_period, close_events
        self.pending: dict[str, _Pending] = {}

    def _snapshot(self, name: str) -> tuple[int, int] | None:
        try:
            st = os.stat(os.path.join(self.folder, name))
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    def _special(self, name: str) -> bool:
        """A FIFO, folder, socket or device by a log's name: never "being written", so never
        pending (a FIFO gets no close event); the planner reports it unreadable."""
        try:
            return not stat.S_ISREG(os.stat(os.path.join(self.folder, name)).st_mode)
        except OSError:
            return False

    def add_existing(self, name: str) -> bool:
        """A log found at start. Returns True when it may still be being written (changed within
        the quiet period): nothing tells whether its writer has closed it."""
        snap = self._snapshot(name)
        if (snap is None or time.time() - snap[1] / 1e9 >= self.quiet_period
                or self._special(name)):
            return False
        self.pending[name] = _Pending(time.monotonic(), snap)
        return True

    def suspect(self, name: str) -> None:
        """A log that changed with no event seen yet (the event is still on its way, or the
        filesystem sends none): pending until its events or the quiet period settle it."""
        self.pending.setdefault(name, _Pending(time.monotonic(), self._snapshot(name)))

    def note(self, change: Change) -> str | None:
        """Take one event for a log name; returns "ready", "gone", "pending" (newly), or None."""
        name, kind = change.name, change.kind
        if kind in ("moved_in", "closed"):
            self.pending.pop(name, None)
            return "ready"
        if kind == "gone":
            self.pending.pop(name, None)
            return "gone"
        if kind == "attrib":
            return None if name in self.pending else "ready"
        # created / modified
        if self._special(name):
            self.pending.pop(name, None)
            return "ready"
        now, p = time.monotonic(), self.pending.get(name)
        new = p is None
        if p is None:
            p = self.pending[name] = _Pending(now, self._snapshot(name),
                                              how="link" if self.close_events else "quiet")
        if self.close_events and kind == "modified":
            p.writer_open = True
        p.since, p.snapshot = now, self._snapshot(name)
        return "pending" if new else None

    def poll(self) -> list[tuple[str, str]]:
        """(name, "ready" | "gone") for the pending files settled by now."""
        settled = []
        now = time.monotonic()
        for name, p in list(self.pending.items()):
            snap = self._snapshot(name)
            if snap is None:
                del self.pending[name]
                settled.append((name, "gone"))
            elif p.writer_open:
                continue  # its writer's close event completes it
            elif snap != p.snapshot:
                p.since, p.snapshot = now, snap
            elif now - p.since >= self.quiet_period and (p.how == "quiet" or snap[0] > 0):
                # "link" with size 0: a writer created it and has not written yet; its close
                # event will come
                del self.pending[name]
                settled.append((name, "ready"))
        return settled

    def next_check(self) -> float | None:
        """Seconds until a pending file may settle (None: nothing to wait for)."""
        waits = [p.since + self.quiet_period - time.monotonic()
                 for p in self.pending.values() if not p.writer_open]
        return max(0.0, min(waits)) if waits else None
