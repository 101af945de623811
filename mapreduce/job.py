"""How a job is written.

Two styles share one runner:

* :class:`Job`, record at a time, in the spirit of mrjob: ``mapper(line)`` yields ``(key, value)``
  pairs, an optional ``combiner(key, values)`` and ``reducer(key, values)`` fold the values of one key.
  Keys and values are JSON values in transit (orjson): a tuple comes back as a list.
* :class:`ArrayJob`, a bulk map: ``map_block`` gets many whole lines at once and returns numpy
  columns per named output ("channel"); ``combine`` sums tables; ``partition`` says which reducer
  each row goes to. One Python call per 8 MiB instead of one per line is what makes tens of millions
  of lines a day cheap.

A job is referenced as ``"module:Class"`` so that only that string crosses a process boundary;
each worker imports the module itself.
"""
from __future__ import annotations

import importlib
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

Table = Mapping[str, np.ndarray]  # equal-length named columns


class Job:
    """Record-at-a-time job. Subclass and override ``mapper`` and ``reducer`` (``combiner`` optional)."""

    #: base name of the output file; defaults to the module's last component
    name: str | None = None

    def mapper(self, line: str) -> Iterable[tuple[Any, Any]]:
        raise NotImplementedError

    combiner: Any = None  # optional: def combiner(self, key, values) -> Iterable[(key, value)]

    def reducer(self, key: Any, values: Iterator[Any]) -> Iterable[tuple[Any, Any]]:
        raise NotImplementedError

    def counters(self) -> dict[str, int]:
        """Counters the job kept while mapping; summed over tasks into the run report."""
        return dict(getattr(self, "_counters", {}))

    def increment(self, counter: str, amount: int = 1) -> None:
        counts = self.__dict__.setdefault("_counters", {})
        counts[counter] = counts.get(counter, 0) + amount


class ArrayJob:
    """Bulk job over numpy columns. Override every method below."""

    name: str | None = None
    #: named outputs of the map side, each partitioned and reduced on its own
    channels: tuple[str, ...] = ()

    def map_block(self, block: bytes, offset: int) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
        """Parse whole lines starting at file ``offset``; return ``(tables by channel, stats)``.

        ``stats`` holds counters (ints, summed across blocks and tasks) and optionally ``samples``,
        a list of small JSON values (kept in offset order, first ``max_samples`` per run).
        """
        raise NotImplementedError

    def combine(self, channel: str, tables: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Fold tables of one channel into one, sorted by key, one row per key."""
        raise NotImplementedError

    def partition(self, channel: str, table: dict[str, np.ndarray], partitions: int) -> np.ndarray:
        """Partition number (0 .. partitions-1) of every row of a combined table."""
        raise NotImplementedError

    max_samples: int = 100


def load_job(ref: str) -> Job | ArrayJob:
    """Import ``"package.module:Class"`` and return an instance; ValueError with a clear reason."""
    module_name, sep, class_name = ref.partition(":")
    if not sep or not module_name or not class_name:
        raise ValueError(f"job must be given as MODULE:CLASS, got {ref!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import job module {module_name!r}: {exc}") from exc
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or not issubclass(cls, (Job, ArrayJob)):
        raise ValueError(f"{ref!r} is not a Job or ArrayJob class")
    job = cls()
    if job.name is None:
        job.name = module_name.rsplit(".", 1)[-1]
    return job
