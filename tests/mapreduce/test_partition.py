from __future__ import annotations

import multiprocessing

import numpy as np

from mapreduce.codec import encode
from mapreduce.partition import group_by_partition, partition_ints, partition_of
from tests.mapreduce.backends import BACKENDS, backend

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


def test_both_backends_send_every_key_to_the_same_partition():
    # a store's days were partitioned by whichever backend ran: they must agree on every key
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.integers(0, 2**63, 50_000, dtype=np.int64).astype(np.uint64),
                             np.array([0, 1, 2**63, 2**64 - 1], dtype=np.uint64)])
    results = []
    for name in BACKENDS:
        with backend(name):
            results.append([partition_ints(values, n) for n in (1, 7, 64, 70_000)])
    for a, b in zip(*results):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_group_by_partition_keeps_each_partitions_rows_in_order():
    rng = np.random.default_rng(6)
    keys = rng.integers(0, 10**12, 20_000).astype(np.uint64)
    parts = partition_ints(keys, 16)
    for name in BACKENDS:
        with backend(name):
            table = {"key": keys.copy(), "row": np.arange(len(keys))}
            grouped, bounds = group_by_partition(table, parts, 16)
        assert not table  # released as moved
        for p in range(16):
            rows = grouped["row"][bounds[p]:bounds[p + 1]]
            assert np.array_equal(rows, np.flatnonzero(parts == p)), name
            assert np.array_equal(grouped["key"][bounds[p]:bounds[p + 1]], keys[rows])
