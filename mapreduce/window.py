"""Window tasks: one partition of a windowed job's channel over the window's tables (days, or
rolled-up blocks of days), combined, finalized and formatted by the job one key range at a
time; then every partition's lines merged in key order by range tasks, in parallel.

    tables of partition p ──SortedRuns: key range by key range──▶ window_combine ─▶ finalize
        ─▶ format ─▶ p's text, its keys and line ends (appended range after range)
    keys of all partitions ──cut into R ranges (quantiles of one partition's keys)──▶
        merge task r: lines of range r from every partition, a merge of sorted runs ─▶ part r
    parts 0..R-1 ──concatenated in the kernel (copy_file_range)──▶ the channel's file
    (a channel of one range, a small one, is merged by the parent straight into its file)

Each stored row is read once per window, and a task holds one key range (about
``DEFAULT_BUDGET`` rows over all tables) at a time, whatever the window's length. Partitions
hold disjoint keys, so range r of the output is the lines of range r of each partition: the
parent only looks up R cut keys in each partition's sorted keys (a memory map, a few pages).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterator

import numpy as np

from mapreduce import kernels
from mapreduce.job import JobSpec, load_job
from mapreduce.memtune import release_free_memory
from mapreduce.sortedruns import DEFAULT_BUDGET, Input, SortedRuns, Table, fold

MERGE_CHUNK_BYTES = 2 * 1024 * 1024  # cache-sized: 4 MB merged slower, 16 MB slower still (measured)
#: lines a merge task takes at most (about 40 bytes of index each)
MERGE_TASK_LINES = 4_000_000
#: below this many lines a channel is merged by one task
MERGE_SMALL_LINES = 200_000


@dataclass(frozen=True)
class WindowTask:
    job: JobSpec
    channel: str
    partition: int
    inputs: tuple[Input, ...]     # days or rolled-up blocks (mapreduce.sortedruns.Input)
    out_prefix: str
    budget: int = DEFAULT_BUDGET


@dataclass(frozen=True)
class WindowResult:
    channel: str
    partition: int
    text_path: str
    keys_path: str     # uint64 key of each line, in order
    ends_path: str     # int64 end offset of each line in the text
    lines: int
    bytes: int
    seconds: float


def run_window(task: WindowTask) -> WindowResult:
    job = load_job(task.job)
    started = time.perf_counter()
    # pid in the names: a cluster's rerun of a cut-off but live task must not share its files
    stem = f"{task.out_prefix}.{os.getpid()}"
    paths = (f"{stem}.txt", f"{stem}.keys", f"{stem}.ends")
    lines = written = 0
    last_key: int | None = None
    try:
        with SortedRuns(list(task.inputs), job.group_column(task.channel), task.budget) as runs, \
                open(paths[0], "wb") as text_f, open(paths[1], "wb") as keys_f, \
                open(paths[2], "wb") as ends_f:
            for expected, parts in runs.chunk_parts():
                combined = _combine_chunk(job, task.channel, expected, parts, task.budget)
                if combined is None:
                    continue
                result = job.finalize(task.channel, combined)
                del combined
                keys, text = job.format(task.channel, result)
                del result
                keys = np.asarray(keys).astype(np.uint64)
                ends = np.flatnonzero(np.frombuffer(text, dtype=np.uint8) == 10) + 1
                if len(ends) != len(keys):
                    raise ValueError(f"{task.job.label}.format({task.channel!r}) returned "
                                     f"{len(keys)} keys for {len(ends)} lines: one key per "
                                     "line is needed")
                if len(keys) and ((last_key is not None and int(keys[0]) < last_key)
                                  or bool(np.any(keys[1:] < keys[:-1]))):
                    raise ValueError(f"{task.job.label}.format({task.channel!r}) returned lines "
                                     "out of key order")
                if len(keys):
                    last_key = int(keys[-1])
                text_f.write(text)
                keys_f.write(keys.tobytes())
                ends_f.write((ends.astype(np.int64) + written).tobytes())
                lines += len(keys)
                written += len(text)
    finally:
        release_free_memory()
    return WindowResult(task.channel, task.partition, *paths, lines, written,
                        time.perf_counter() - started)


def _combine_chunk(job: Any, channel: str, expected: int, parts: Iterator[Table],
                   budget: int) -> Table | None:
    """The chunk's tables combined: folded (:func:`fold`) when the job's combine may be applied
    to its own results (``rollups``), else all at once."""
    if getattr(job, "rollups", False):
        return fold(parts, lambda tables: job.window_combine(channel, tables), budget, expected)
    tables = list(parts)
    return job.window_combine(channel, tables) if tables else None


# -- the merge ------------------------------------------------------------------------------

@dataclass(frozen=True)
class MergePiece:
    """Lines ``lo`` to ``hi`` (excluded) of one partition's result."""

    text_path: str
    keys_path: str
    ends_path: str
    lo: int
    hi: int


@dataclass(frozen=True)
class MergeTask:
    channel: str
    index: int
    pieces: tuple[MergePiece, ...]
    out_path: str


@dataclass(frozen=True)
class MergeResult:
    channel: str
    index: int
    path: str
    lines: int
    bytes: int


def merge_tasks(results: list[WindowResult], channel: str, workers: int,
                scratch: str) -> list[MergeTask]:
    """The channel's lines cut into key ranges, one merge task each (ranges in key order)."""
    results = [r for r in results if r.lines]
    total = sum(r.lines for r in results)
    ranges = 1
    if total > MERGE_SMALL_LINES:
        ranges = max(workers, -(-total // MERGE_TASK_LINES))
        ranges = -(-ranges // workers) * workers  # whole rounds of the workers
    keys = [np.memmap(r.keys_path, dtype=np.uint64, mode="r") if r.lines else None
            for r in results]
    cuts: list[int] = []
    if ranges > 1:
        # partitions are hash-spread samples of one key space: one's quantiles cut all evenly
        sample = keys[max(range(len(results)), key=lambda i: results[i].lines)]
        picks = sample[(np.arange(1, ranges) * len(sample)) // ranges]
        cuts = sorted({int(k) for k in picks if int(k) > int(sample[0])})
    bounds = [[0, *(int(np.searchsorted(k, np.uint64(c), side="left")) for c in cuts), len(k)]
              for k in keys]
    del keys
    tasks = []
    for i in range(len(cuts) + 1):
        pieces = tuple(MergePiece(r.text_path, r.keys_path, r.ends_path, b[i], b[i + 1])
                       for r, b in zip(results, bounds) if b[i + 1] > b[i])
        tasks.append(MergeTask(channel, i, pieces,
                               os.path.join(scratch, f"merge-{channel}-{i:05d}")))
    return tasks


def run_merge(task: MergeTask) -> MergeResult:
    """Write the task's lines in key order to a part file of its own."""
    path = f"{task.out_path}.{os.getpid()}.txt"
    try:
        with open(path, "wb") as out:
            lines, size = merge_into(task, out)
        return MergeResult(task.channel, task.index, path, lines, size)
    finally:
        release_free_memory()


def merge_into(task: MergeTask, out: BinaryIO) -> tuple[int, int]:
    """Write the task's lines in key order to ``out``; returns (lines, bytes). Each piece is a
    sorted run: a stable sort of their concatenation is a merge of runs (timsort finds them)."""
    keys, lengths, starts, source = [], [], [], []
    for i, piece in enumerate(task.pieces):
        keys.append(np.fromfile(piece.keys_path, dtype=np.uint64, count=piece.hi - piece.lo,
                                offset=8 * piece.lo))
        ends = np.fromfile(piece.ends_path, dtype=np.int64, count=piece.hi - piece.lo + 1,
                           offset=8 * (piece.lo - 1)) if piece.lo else np.concatenate(
            [np.zeros(1, np.int64), np.fromfile(piece.ends_path, dtype=np.int64,
                                                count=piece.hi)])
        lengths.append(np.diff(ends).astype(np.int32))
        starts.append(ends[:-1])
        source.append(np.full(piece.hi - piece.lo, i, dtype=np.uint32))
    lines = sum(len(k) for k in keys)
    if not lines:
        return 0, 0
    order = np.argsort(np.concatenate(keys), kind="stable")
    del keys
    length = np.concatenate(lengths)
    start = np.concatenate(starts)
    src = np.concatenate(source)
    out_end = np.cumsum(length[order], dtype=np.int64)
    files = [open(p.text_path, "rb") for p in task.pieces]
    try:
        lo = 0
        while lo < len(order):
            budget = (out_end[lo - 1] if lo else 0) + MERGE_CHUNK_BYTES
            hi = max(lo + 1, int(np.searchsorted(out_end, budget, side="right")))
            out.write(memoryview(_gather(order[lo:hi], src, start, length, files)))
            lo = hi
    finally:
        for f in files:
            f.close()
    return lines, int(out_end[-1])


def concatenate(parts: list[MergeResult], out: BinaryIO) -> int:
    """Append the parts to ``out`` in order (in the kernel where it can); returns the lines."""
    out.flush()
    for part in sorted(parts, key=lambda p: p.index):
        with open(part.path, "rb") as f:
            left = part.bytes
            copy = getattr(os, "copy_file_range", None)
            while left and copy is not None:
                try:
                    n = copy(f.fileno(), out.fileno(), left)
                except OSError:  # another filesystem, or not supported: copy through memory
                    break
                if n == 0:
                    break
                left -= n
            if left:
                f.seek(part.bytes - left)
                out.seek(0, os.SEEK_END)
                while left:
                    data = f.read(min(left, 1 << 24))
                    if not data:
                        raise OSError(f"{part.path}: shorter than its {part.bytes} bytes")
                    out.write(data)
                    left -= len(data)
                out.flush()
    out.seek(0, os.SEEK_END)  # the buffered file's position after the kernel's writes
    return sum(p.lines for p in parts)


def _gather(rows: np.ndarray, source: np.ndarray, file_start: np.ndarray, lengths: np.ndarray,
            files: list) -> np.ndarray:
    """The lines ``rows`` (in that order) as one byte array. Each source's lines of the chunk
    lie in one span of its file (a piece is in key order), read once into a shared buffer."""
    src = source[rows]
    line_start = file_start[rows]
    line_len = lengths[rows].astype(np.int64)
    span_lo = np.full(len(files), np.iinfo(np.int64).max, dtype=np.int64)
    span_hi = np.zeros(len(files), dtype=np.int64)
    np.minimum.at(span_lo, src, line_start)
    np.maximum.at(span_hi, src, line_start + line_len)
    used = np.flatnonzero(span_hi > 0)
    buffer = np.empty(int((span_hi[used] - span_lo[used]).sum()), dtype=np.uint8)
    base = np.zeros(len(files), dtype=np.int64)
    at = 0
    for s in used.tolist():
        size = int(span_hi[s] - span_lo[s])
        files[s].seek(int(span_lo[s]))
        if files[s].readinto(memoryview(buffer)[at:at + size]) != size:
            raise OSError(f"{files[s].name}: shorter than its lines")
        base[s] = at - span_lo[s]
        at += size
    line_src = line_start + base[src]
    if kernels.enabled():
        out = np.empty(int(line_len.sum()), dtype=np.uint8)
        _copy_lines(buffer, line_src, line_len, out)
        return out
    out_start = np.cumsum(line_len) - line_len
    index = np.repeat((line_src - out_start).astype(np.int32), line_len)
    index += np.arange(len(index), dtype=np.int32)
    return buffer[index]


@kernels.kernel
def _copy_lines(buffer: np.ndarray, line_src: np.ndarray, line_len: np.ndarray,
                out: np.ndarray) -> None:
    at = 0
    for i in range(len(line_src)):
        start, length = line_src[i], line_len[i]
        out[at:at + length] = buffer[start:start + length]
        at += length
