"""Stable partitioners: the same key goes to the same reducer in every process and on every machine.

Never the built-in ``hash()``: string hashing is salted per process (PYTHONHASHSEED), so a spawned
worker would send a key to a different reducer than its parent.
"""
from __future__ import annotations

import zlib

import numpy as np

from mapreduce import kernels


def partition_of(key_bytes: bytes, partitions: int) -> int:
    """Partition of an encoded key: crc32 of its bytes, modulo the number of partitions."""
    return zlib.crc32(key_bytes) % partitions


_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def mix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser over integer keys, vectorised: a fixed, well-spread integer hash."""
    x = values.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= _M1
        x ^= x >> np.uint64(27)
        x *= _M2
        x ^= x >> np.uint64(31)
    return x


def partition_ints(values: np.ndarray, partitions: int) -> np.ndarray:
    """Partition of each integer key (as an int64/uint64 value), vectorised. The result is
    uint16 when it fits, so that grouping rows by partition is a radix sort."""
    dtype = np.uint16 if partitions <= 1 << 16 else np.uint32
    if kernels.enabled():
        out = np.empty(len(values), dtype=dtype)
        _partition_kernel(values.astype(np.uint64, copy=False), np.uint64(partitions), out)
        return out
    return (mix64(values) % np.uint64(partitions)).astype(dtype)


def group_by_partition(table: dict[str, np.ndarray], parts: np.ndarray,
                       partitions: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The table's rows grouped by partition, each group in the rows' order, and the bounds:
    partition p is rows ``bounds[p]:bounds[p + 1]``. The input table's columns are released
    as they are moved (the caller's dict is emptied), so a spill holds one extra column."""
    if kernels.enabled():
        counts = np.bincount(parts, minlength=partitions)
        bounds = np.zeros(partitions + 1, dtype=np.int64)
        np.cumsum(counts, out=bounds[1:])
        index = np.int32 if len(parts) < 2**31 else np.int64
        destination = np.empty(len(parts), dtype=index)
        _destinations(parts, bounds[:-1].copy(), destination)
        grouped = {}
        for name in list(table):
            column = table.pop(name)
            moved = np.empty_like(column)
            moved[destination] = column
            grouped[name] = moved
        return grouped, bounds
    order = np.argsort(parts, kind="stable")  # keeps each partition's rows in their order
    bounds = np.searchsorted(parts[order], np.arange(partitions + 1))
    grouped = {name: table.pop(name)[order] for name in list(table)}
    return grouped, bounds


@kernels.kernel
def _partition_kernel(values: np.ndarray, partitions: np.uint64, out: np.ndarray) -> None:
    """``mix64(values) % partitions`` in one pass (the same splitmix64 finaliser)."""
    for i in range(len(values)):
        x = values[i]
        x ^= x >> np.uint64(30)
        x *= _M1
        x ^= x >> np.uint64(27)
        x *= _M2
        x ^= x >> np.uint64(31)
        out[i] = x % partitions


@kernels.kernel
def _destinations(parts: np.ndarray, next_free: np.ndarray, out: np.ndarray) -> None:
    for i in range(len(parts)):
        p = parts[i]
        out[i] = next_free[p]
        next_free[p] += 1
