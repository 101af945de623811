"""Stable partitioners: the same key goes to the same reducer in every process and on every machine.

Never the built-in ``hash()``: string hashing is salted per process (PYTHONHASHSEED), so a spawned
worker would send a key to a different reducer than its parent.
"""
from __future__ import annotations

import zlib

import numpy as np


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
    return (mix64(values) % np.uint64(partitions)).astype(dtype)
