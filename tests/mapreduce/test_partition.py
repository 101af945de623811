from __future__ import annotations

import multiprocessing

import numpy as np

from mapreduce.codec import encode
from mapreduce.partition import partition_ints, partition_of

KEYS = ["song-1", "é", "", "a" * 100, "7", "FR"]
INTS = np.array([0, 1, 7, 2**40, 2**63 - 1, 123456789], dtype=np.int64)


def _in_child(_: int) -> tuple[list[int], list[int]]:
    return ([partition_of(encode(k), 13) for k in KEYS],
            partition_ints(INTS, 13).tolist())


def test_same_partition_in_a_spawned_child():
    here = _in_child(0)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        there = pool.map(_in_child, [0])[0]
    assert here == there


def test_partitions_are_in_range_and_spread():
    parts = partition_ints(np.arange(100_000), 64)
    counts = np.bincount(parts, minlength=64)
    assert parts.max() < 64 and counts.min() > 1200  # about 1562 each
