"""When and where each task ran: one event per task attempt, measured in the worker.

The runner submits ``Timed(fn)`` instead of ``fn``: a top-level callable, pickled by reference,
so the same timing works inline, on the local pool and on Dask. It keeps ``fn``'s name, which is
what Dask names its tasks after (``run_map-<id>``, as before). A task that raises carries its
timing on the exception (an attribute, which pickling keeps); a worker that died says nothing, so
its attempt ends when the parent noticed.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

#: outcomes of one attempt
OK, FAILED, WORKER_DIED = "ok", "failed", "worker died"
#: the attribute of a task's exception that carries its Timing
TIMING_ATTRIBUTE = "mapreduce_timing"


def worker_name(pid: int | None = None) -> str:
    """host:pid of this process (or of ``pid`` on this host), as task results name workers."""
    return f"{os.uname().nodename}:{pid or os.getpid()}"


@dataclass(frozen=True)
class Timing:
    start: float  # time.time() in the worker
    end: float
    worker: str


@dataclass(frozen=True)
class TimedResult:
    value: Any
    start: float
    end: float
    worker: str

    @property
    def timing(self) -> Timing:
        return Timing(self.start, self.end, self.worker)


def timed_call(fn: Callable[[Any], Any], task: Any) -> TimedResult:
    """``fn(task)`` with its wall-clock start and end and the process that ran it."""
    start = time.time()
    try:
        value = fn(task)
    except BaseException as exc:
        try:
            setattr(exc, TIMING_ATTRIBUTE, Timing(start, time.time(), worker_name()))
        except (AttributeError, TypeError):  # an exception type that takes no attributes
            pass
        raise
    return TimedResult(value, start, time.time(), worker_name())


class Timed:
    """``timed_call(fn, task)`` as a one-argument callable named after ``fn``."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn
        self.__name__ = getattr(fn, "__name__", type(fn).__name__)

    def __call__(self, task: Any) -> TimedResult:
        return timed_call(self.fn, task)


def timing_of(exc: BaseException) -> Timing | None:
    timing = getattr(exc, TIMING_ATTRIBUTE, None)
    return timing if isinstance(timing, Timing) else None


@dataclass(frozen=True)
class TaskEvent:
    """One attempt of one task. ``attempt`` counts from 1; ``worker`` is host:pid, or None
    when nobody said (a failure reported by the scheduler, not by the task)."""

    stage: str
    task: int
    label: str | None
    worker: str | None
    start: float
    end: float
    attempt: int
    outcome: str

    @property
    def seconds(self) -> float:
        return self.end - self.start


class Trace:
    """The events of a run, in the order the runner learnt of them."""

    def __init__(self) -> None:
        self._events: list[TaskEvent] = []
        self._lock = threading.Lock()

    def add(self, event: TaskEvent) -> None:
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> list[TaskEvent]:
        with self._lock:
            return list(self._events)

    def __len__(self) -> int:
        return len(self._events)

    def to_json(self) -> list[dict[str, Any]]:
        return [asdict(e) for e in self.events]
