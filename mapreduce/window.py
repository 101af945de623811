"""Window tasks: one partition of a windowed job's channel over the window's days, combined,
finalized and formatted by the job; then every partition's lines merged in key order.

    STORE/STEP/day-D-6 .. day-D, partition p ──run_window──▶ text of p's groups in key order
                                                            + each line's key and length
    all partitions ──merge_partitions──▶ one file in key order (a k-way merge done in chunks)

A partition holding more rows than a task may is cut into slices by a second hash of the job's
group column, each slice a task; one day's table at a time is loaded whole, and only the
slice's rows of it are kept.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from mapreduce import codec
from mapreduce.job import JobSpec, load_job
from mapreduce.memtune import release_free_memory
from mapreduce.partition import mix64

_SLICE_SALT = np.uint64(0x5851F42D4C957F2D)
MERGE_CHUNK_BYTES = 4 * 1024 * 1024  # the gather index costs 4 bytes per byte of a chunk


@dataclass(frozen=True)
class WindowTask:
    job: JobSpec
    channel: str
    partition: int
    inputs: tuple[tuple[str, int], ...]     # (table path, crc32), one per day present
    out_prefix: str
    slice_index: int = 0   # this task keeps the groups whose second hash is slice_index
    slices: int = 1        # of slices


@dataclass(frozen=True)
class WindowResult:
    channel: str
    partition: int
    text_path: str
    index_path: str
    lines: int
    seconds: float


def run_window(task: WindowTask) -> WindowResult:
    job = load_job(task.job)
    started = time.perf_counter()
    try:
        group = job.group_column(task.channel)
        tables = [_slice(codec.load_table(path, crc), group, task.slice_index, task.slices)
                  for path, crc in task.inputs]
        combined = job.window_combine(task.channel, tables)
        del tables
        result = job.finalize(task.channel, combined)
        del combined
        keys, text = job.format(task.channel, result)
        del result
    finally:
        release_free_memory()
    ends = np.flatnonzero(np.frombuffer(text, dtype=np.uint8) == 10) + 1
    lengths = np.diff(ends, prepend=0)
    if len(lengths) != len(keys):
        raise ValueError(f"{task.job.label}.format({task.channel!r}) returned {len(keys)} keys "
                         f"for {len(lengths)} lines: one key per line is needed")
    # pid in the names: a cluster's rerun of a cut-off but live task must not share its files
    text_path = f"{task.out_prefix}.{os.getpid()}.txt"
    index_path = f"{task.out_prefix}.{os.getpid()}.idx.tbl"
    with open(text_path, "wb") as f:
        f.write(text)
    codec.save_table(index_path, {"key": keys, "length": lengths})
    return WindowResult(task.channel, task.partition, text_path, index_path, len(keys),
                        time.perf_counter() - started)


def _slice(table: dict[str, np.ndarray], group: str, index: int,
           slices: int) -> dict[str, np.ndarray]:
    """The rows whose group falls in one slice; a second hash, independent of the partition's."""
    if slices == 1:
        return table
    keep = (mix64(table[group].astype(np.uint64) ^ _SLICE_SALT) % np.uint64(slices)) == index
    return {name: col[keep] for name, col in table.items()}


def merge_partitions(results: list[WindowResult], out: BinaryIO) -> int:
    """Write every partition's lines to ``out`` ordered by key; returns the number of lines.

    Each partition's lines are already in key order, so any run of the global order takes a
    contiguous range of lines from each partition: a chunk reads those ranges and gathers its
    lines with one vectorised index, never a Python call per line.
    """
    indexes = [codec.load_table(r.index_path) for r in results]
    if not sum(len(ix["key"]) for ix in indexes):
        return 0
    # this runs in the parent over every group of the window (millions of users): columns
    # stay as narrow as they can, and a key is in one partition only, so no stable sort
    order = np.argsort(np.concatenate([ix["key"].astype(np.uint64) for ix in indexes]))
    lengths = np.concatenate([ix["length"].astype(np.int32) for ix in indexes])
    source = np.concatenate([np.full(len(ix["key"]), i, dtype=np.uint32)
                             for i, ix in enumerate(indexes)])
    file_start = np.concatenate([np.cumsum(ix["length"], dtype=np.int64) - ix["length"]
                                 for ix in indexes])
    del indexes
    out_end = np.cumsum(lengths[order], dtype=np.int64)
    _allow_open_files(len(results) + 64)
    files = [open(r.text_path, "rb") for r in results]
    try:
        lo = 0
        while lo < len(order):
            budget = (out_end[lo - 1] if lo else 0) + MERGE_CHUNK_BYTES
            hi = max(lo + 1, int(np.searchsorted(out_end, budget, side="right")))
            out.write(_gather(order[lo:hi], source, file_start, lengths, files))
            lo = hi
    finally:
        for f in files:
            f.close()
    return len(order)


def _allow_open_files(count: int) -> None:
    """A long window cut into many slices has one text file each, all read at once: lift the
    soft limit on open files (often 1024) up to the hard one when that is needed."""
    try:
        import resource
    except ImportError:  # not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count:
        target = count if hard == resource.RLIM_INFINITY else min(count, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _gather(rows: np.ndarray, source: np.ndarray, file_start: np.ndarray, lengths: np.ndarray,
            files: list) -> bytes:
    src = source[rows]
    pieces, piece_base = [], np.zeros(len(files), dtype=np.int64)
    base = 0
    for s in np.unique(src):
        mine = rows[src == s]
        start = int(file_start[mine].min())
        stop = int((file_start[mine] + lengths[mine]).max())
        files[s].seek(start)
        pieces.append(files[s].read(stop - start))
        piece_base[s] = base - start
        base += stop - start
    buffer = np.frombuffer(b"".join(pieces), dtype=np.uint8)
    line_len = lengths[rows].astype(np.int64)
    line_src = file_start[rows] + piece_base[src]
    out_start = np.cumsum(line_len) - line_len
    index = np.repeat((line_src - out_start).astype(np.int32), line_len)
    index += np.arange(len(index), dtype=np.int32)
    return buffer[index].tobytes()
