"""Map and reduce tasks: top-level functions over small frozen specs, run in worker processes.

Only specs and results (paths, byte ranges, counts) cross the process boundary; the data stays in
files in the run's scratch folder. A task writes only under names that carry its attempt number
and its process id, so a retried task never collides with the remains of a killed one, nor a
cluster's rerun with a cut-off first run that is still alive.
"""
from __future__ import annotations

import heapq
import os
import time
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

import numpy as np
import psutil

from mapreduce import codec
from mapreduce.job import ArrayJob, Job, JobSpec, load_job
from mapreduce.memtune import release_free_memory
from mapreduce.partition import group_by_partition, partition_of
from mapreduce.splits import DEFAULT_BLOCK_SIZE, Split, iter_lines, read_blocks

RECORD_CHANNEL = "records"
_RSS_CHECK_EVERY = 20_000  # lines between two memory checks of a record job's map


@dataclass(frozen=True)
class MapTask:
    job: JobSpec
    index: int
    split: Split
    partitions: int
    scratch: str
    memory_budget: int
    block_size: int = DEFAULT_BLOCK_SIZE
    attempt: int = 0


@dataclass(frozen=True)
class MapResult:
    index: int
    runs: tuple[tuple[str, int, str], ...]  # (channel, partition, path)
    lines: int
    records: int
    spills: int
    counters: dict[str, int] = field(default_factory=dict)
    samples: tuple[Any, ...] = ()
    seconds: float = 0.0
    worker: str = ""


@dataclass(frozen=True)
class ReduceTask:
    job: JobSpec
    index: int
    channel: str
    partition: int
    inputs: tuple[str, ...]
    out_path: str


@dataclass(frozen=True)
class ReduceResult:
    index: int
    channel: str
    partition: int
    path: str | None
    records: int
    seconds: float = 0.0
    bytes: int = 0
    crc32: int | None = None


def _worker_name() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


def run_map(task: MapTask) -> MapResult:
    job = load_job(task.job)
    job.input_path = task.split.path
    started = time.perf_counter()
    try:
        if isinstance(job, ArrayJob):
            result = _map_arrays(job, task)
        else:
            result = _map_records(job, task)
    finally:
        release_free_memory()
    return MapResult(**{**result.__dict__, "seconds": time.perf_counter() - started,
                        "worker": _worker_name()})


def _own(path: str) -> str:
    """``path`` tagged with this process: a cluster may rerun a task whose first run is cut
    off but still alive, and each execution must write files of its own."""
    stem, ext = os.path.splitext(path)
    return f"{stem}.{os.getpid()}{ext}"


def _run_path(task: MapTask, channel: str, partition: int, spill: int, ext: str) -> str:
    return _own(os.path.join(task.scratch, f"map{task.index:05d}.a{task.attempt}.{channel}"
                                           f".p{partition:05d}.s{spill}.{ext}"))


def _map_records(job: Job, task: MapTask) -> MapResult:
    proc = psutil.Process()
    baseline = proc.memory_info().rss
    buffer: dict[bytes, list[Any]] = {}
    runs: list[tuple[str, int, str]] = []
    lines = records = spills = 0

    def spill() -> None:
        nonlocal spills
        if not buffer:
            return
        by_partition: dict[int, list[bytes]] = {}
        for key_bytes, values in buffer.items():
            key = codec.decode(key_bytes)
            pairs = job.combiner(key, iter(values)) if job.combiner else ((key, v) for v in values)
            for out_key, out_value in pairs:
                out_key_bytes = codec.encode(out_key)
                p = partition_of(out_key_bytes, task.partitions)
                by_partition.setdefault(p, []).append(
                    out_key_bytes + b"\t" + codec.encode(out_value) + b"\n")
        for p, encoded in by_partition.items():
            encoded.sort(key=codec.line_order)
            path = _run_path(task, RECORD_CHANNEL, p, spills, "jsonl")
            codec.write_lines(path, encoded)
            runs.append((RECORD_CHANNEL, p, path))
        buffer.clear()
        spills += 1

    for raw in iter_lines(task.split, task.block_size):
        lines += 1
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        for key, value in job.mapper(raw.decode("utf-8", "replace")) or ():
            records += 1
            buffer.setdefault(codec.encode(key), []).append(value)
        if lines % _RSS_CHECK_EVERY == 0 and proc.memory_info().rss - baseline > task.memory_budget:
            spill()
    spill()
    return MapResult(task.index, tuple(runs), lines, records, spills, job.counters())


def _map_arrays(job: ArrayJob, task: MapTask) -> MapResult:
    pending: dict[str, list[dict[str, np.ndarray]]] = {c: [] for c in job.channels}
    pending_bytes = 0
    runs: list[tuple[str, int, str]] = []
    counters: dict[str, int] = {}
    samples: list[Any] = []
    records = spills = 0

    def spill() -> None:
        nonlocal pending_bytes, spills
        for channel, tables in pending.items():
            if not tables:
                continue
            combined = job.map_combine(channel, tables)
            tables.clear()
            rows = codec.table_rows(combined)
            if not rows:
                continue
            parts = job.partition(channel, combined, task.partitions)
            grouped, bounds = group_by_partition(combined, parts, task.partitions)
            del combined, parts
            for p in range(task.partitions):
                lo, hi = bounds[p], bounds[p + 1]
                if lo == hi:
                    continue
                path = _run_path(task, channel, p, spills, "tbl")
                codec.save_table(path, {n: col[lo:hi] for n, col in grouped.items()})
                runs.append((channel, p, path))
            del grouped
        pending_bytes = 0
        spills += 1

    for offset, block in read_blocks(task.split, task.block_size):
        tables, stats = job.map_block(block, offset)
        for name, value in stats.items():
            if name == "samples":
                if len(samples) < job.max_samples:
                    samples.extend(value[: job.max_samples - len(samples)])
            else:
                counters[name] = counters.get(name, 0) + int(value)
        for channel, table in tables.items():
            pending[channel].append(table)
            pending_bytes += sum(col.nbytes for col in table.values())
            records += codec.table_rows(table)
        if pending_bytes > task.memory_budget:
            spill()
    spill()
    lines = counters.pop("lines", 0)
    return MapResult(task.index, tuple(runs), lines, records, spills, counters, tuple(samples))


def run_reduce(task: ReduceTask) -> ReduceResult:
    job = load_job(task.job)
    started = time.perf_counter()
    try:
        return _reduce(job, task, started)
    finally:
        release_free_memory()


def _reduce(job: Job | ArrayJob, task: ReduceTask, started: float) -> ReduceResult:
    path = _own(task.out_path)
    if isinstance(job, ArrayJob):
        tables = [codec.load_table(p) for p in task.inputs]
        merged = job.combine(task.channel, tables)
        del tables
        records = codec.table_rows(merged)
        size, crc = codec.save_table(path, merged, compact=True)  # kept: the store's format
    else:
        records = codec.write_lines(path, _reduce_records(job, task.inputs))
        size, crc = os.path.getsize(path), None
    return ReduceResult(task.index, task.channel, task.partition, path, records,
                        time.perf_counter() - started, size, crc)


def _reduce_records(job: Job, inputs: tuple[str, ...]):
    merged = heapq.merge(*(codec.read_lines(p) for p in inputs), key=codec.line_order)
    for key_bytes, group in groupby(merged, key=lambda line: codec.split_pair(line)[0]):
        values = (codec.decode(codec.split_pair(line)[1]) for line in group)
        for out_key, out_value in job.reducer(codec.decode(key_bytes), values) or ():
            yield codec.encode_pair(out_key, out_value)
