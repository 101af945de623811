"""Run reports: memory of all the run's processes together (peak and samples), stage timings,
versions, JSON on disk."""
from __future__ import annotations

import os
import threading
import time
from typing import Any

import psutil

from mapreduce.fsutil import atomic_write_bytes


def tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants (workers included)."""
    total = 0
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in members:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


class MemorySampler:
    """Samples the process tree's resident memory in a thread: ``peak`` is the largest sum seen,
    ``samples`` a bounded list of ``(epoch seconds, rss bytes)`` for a chart.

    The list never holds more than ``max_samples``: when it is full, neighbouring pairs are merged
    into the larger of the two and each later sample stands for twice as many readings (again the
    largest), so a daemon that runs for weeks keeps a coarser picture, not a longer one, and no
    spike is averaged away.
    """

    def __init__(self, interval: float = 0.1, max_samples: int = 4096) -> None:
        if max_samples < 2:
            raise ValueError("max_samples must be at least 2")
        self.interval = interval
        self.max_samples = max_samples
        self.peak = 0
        self._samples: list[tuple[float, int]] = []
        self._stride = 1          # readings per kept sample
        self._pending: tuple[float, int] | None = None  # largest reading of the current stride
        self._pending_count = 0
        self._lock = threading.Lock()
        self._proc = psutil.Process(os.getpid())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    @property
    def samples(self) -> list[tuple[float, int]]:
        with self._lock:
            done = list(self._samples)
            if self._pending is not None:
                done.append(self._pending)
            return done

    def _record(self, when: float, rss: int) -> None:
        self.peak = max(self.peak, rss)
        with self._lock:
            if self._pending is None or rss > self._pending[1]:
                self._pending = (when, rss)
            self._pending_count += 1
            if self._pending_count >= self._stride:
                self._flush()

    def _flush(self) -> None:
        if self._pending is None:
            return
        self._samples.append(self._pending)
        self._pending, self._pending_count = None, 0
        if len(self._samples) >= self.max_samples:
            pairs = self._samples
            self._samples = [max(pairs[i:i + 2], key=lambda s: s[1])
                             for i in range(0, len(pairs), 2)]
            self._stride *= 2

    def _run(self) -> None:
        while not self._stop.is_set():
            self._record(time.time(), tree_rss(self._proc))
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._record(time.time(), tree_rss(self._proc))
        with self._lock:
            self._flush()


def versions() -> dict[str, str | None]:
    """Versions worth printing beside a run's numbers; ``None`` for what is not installed.

    Read from the installed packages' metadata, so Dask is never imported just to be named."""
    import platform
    from importlib import metadata

    def installed(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {"python": platform.python_version(), "project": installed("mapreduce-top50"),
            "numpy": installed("numpy"), "dask": installed("dask"),
            "distributed": installed("distributed")}


class StageClock:
    """Wall time per named stage, in the order they ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def stage(self, name: str) -> "_Timer":
        return _Timer(self, name)


class _Timer:
    def __init__(self, clock: StageClock, name: str) -> None:
        self.clock, self.name = clock, name

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        elapsed = time.perf_counter() - self.started
        self.clock.seconds[self.name] = self.clock.seconds.get(self.name, 0.0) + round(elapsed, 4)


def write_report(path: str, report: dict[str, Any]) -> None:
    import orjson

    atomic_write_bytes(path, orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
                       + b"\n")
