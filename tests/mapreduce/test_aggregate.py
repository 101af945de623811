"""The vectorised aggregates against plain-Python references, at every id width.

The packing rule picks a different path by the widths of keys and counts (packed as they are,
ranked, count in the low bits or beside them), so the strategies draw ids from narrow, 10-digit
and full 63/64-bit ranges and counts from 1 to 2**40.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mapreduce.aggregate import dense_rank, distinct_by_key, sum_by_key, top_k
from tests.mapreduce.backends import BACKENDS, backend

KEYS = ("group", "song")

widths = st.sampled_from([3, 2**16, 10**10, 2**63 - 1, 2**64 - 1])


@st.composite
def tables(draw, with_counts: bool | None = None):
    group_max, song_max = draw(widths), draw(widths)
    count_max = draw(st.sampled_from([1, 255, 2**20, 2**40]))
    counted = draw(st.booleans()) if with_counts is None else with_counts
    out = []
    for _ in range(draw(st.integers(1, 3))):
        n = draw(st.integers(0, 60))
        # few distinct values, so that pairs repeat; the extremes always among them
        pool_g = draw(st.lists(st.integers(0, group_max), min_size=1, max_size=6)) + [group_max]
        pool_s = draw(st.lists(st.integers(0, song_max), min_size=1, max_size=6)) + [song_max]
        g = draw(st.lists(st.sampled_from(pool_g), min_size=n, max_size=n))
        s = draw(st.lists(st.sampled_from(pool_s), min_size=n, max_size=n))
        table = {"group": np.array(g, dtype=np.uint64), "song": np.array(s, dtype=np.uint64)}
        if counted:
            c = draw(st.lists(st.integers(1, count_max), min_size=n, max_size=n))
            table["count"] = np.array(c, dtype=np.uint64)
        out.append(table)
    return out


def reference_sum(tables: list[dict[str, np.ndarray]]) -> list[tuple[int, int, int]]:
    total: Counter = Counter()
    for t in tables:
        counts = t["count"].tolist() if "count" in t else [1] * len(t["group"])
        for g, s, c in zip(t["group"].tolist(), t["song"].tolist(), counts):
            total[(g, s)] += c
    return sorted((g, s, c) for (g, s), c in total.items())


def rows(table: dict[str, np.ndarray]) -> list[tuple[int, int, int]]:
    return list(zip(*(table[n].tolist() for n in ("group", "song", "count"))))


@settings(max_examples=300, deadline=None)
@given(tables())
def test_sum_by_key_is_the_plain_sum_at_every_width(ts):
    want = reference_sum(ts)
    # tables each sorted by group, as a window's day tables are, take the kernels' merge
    by_group = [{n: c[np.argsort(t["group"], kind="stable")] for n, c in t.items()} for t in ts]
    for name in BACKENDS:
        with backend(name):
            for tables in (ts, by_group):
                got = sum_by_key(tables, KEYS)
                assert rows(got) == want, name
                for column in got.values():
                    assert column.dtype.kind == "u"


@settings(max_examples=100, deadline=None)
@given(tables(with_counts=False))
def test_distinct_by_key_is_the_union(ts):
    got = distinct_by_key(ts, KEYS)
    assert list(zip(got["group"].tolist(), got["song"].tolist())) == \
        [(g, s) for g, s, _ in reference_sum(ts)]


@settings(max_examples=300, deadline=None)
@given(tables(), st.integers(1, 5))
def test_top_k_ranks_by_count_then_song(ts, k):
    summed = sum_by_key(ts, KEYS)
    by_group: dict[int, list[tuple[int, int]]] = {}
    for g, s, c in reference_sum(ts):
        by_group.setdefault(g, []).append((-c, s))
    expected = [(g, s, -negc, r) for g in sorted(by_group)
                for r, (negc, s) in enumerate(sorted(by_group[g])[:k])]
    for name in BACKENDS:
        with backend(name):
            best, rank = top_k(summed, k, KEYS)
        assert [(*row, r) for row, r in zip(rows(best), rank.tolist())] == expected, name


def test_top_k_with_counts_too_wide_to_pack_beside_row_numbers():
    table = {"group": np.array([1, 1, 1, 2], dtype=np.uint64),
             "song": np.array([5, 6, 7, 1], dtype=np.uint64),
             "count": np.array([2**63, 2**63 + 1, 2**63, 3], dtype=np.uint64)}
    for name in BACKENDS:
        with backend(name):
            best, rank = top_k(table, 2, KEYS)
        assert rows(best) == [(1, 6, 2**63 + 1), (1, 5, 2**63), (2, 1, 3)], name
        assert rank.tolist() == [0, 1, 0]


@pytest.mark.parametrize("k", [1, 50, 100])
def test_top_k_of_groups_smaller_and_far_larger_than_k(k):
    # a country's 20,000 songs (the heap), groups around k and around 64 (insertion or a sort)
    rng = np.random.default_rng(k)
    sizes = [20_000, 80, 3, 50, 51, 64, 65]
    group = np.repeat(np.arange(len(sizes), dtype=np.uint64), sizes)
    table = {"group": group, "song": np.concatenate([np.arange(n) for n in sizes]).astype(np.uint64),
             "count": rng.integers(1, 6, len(group)).astype(np.uint64)}
    want = []
    for g in range(len(sizes)):
        mine = group == g
        ranked = sorted(zip((-table["count"][mine].astype(np.int64)).tolist(),
                            table["song"][mine].tolist()))[:k]
        want += [(g, s, -negc, r) for r, (negc, s) in enumerate(ranked)]
    for name in BACKENDS:
        with backend(name):
            best, rank = top_k(table, k, KEYS)
        assert [(*row, r) for row, r in zip(rows(best), rank.tolist())] == want, name


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), max_size=80))
def test_dense_rank_orders_and_restores(values):
    column = np.array(values, dtype=np.uint64)
    for name in BACKENDS:
        with backend(name):
            ranks, distinct = dense_rank(column)
        assert distinct.tolist() == sorted(set(values)), name
        assert distinct[ranks].tolist() == values


def test_dense_rank_of_many_rows_on_every_path():
    rng = np.random.default_rng(7)
    narrow = rng.integers(0, 1000, 5000).astype(np.uint64)      # fits beside the row number
    wide = rng.integers(2**62, 2**63, 5000).astype(np.uint64)   # does not
    for column in (narrow, wide, np.repeat(wide[:100], 50)):  # the last: few distinct values
        for name in BACKENDS:
            with backend(name):
                ranks, distinct = dense_rank(column)
            assert np.array_equal(distinct, np.unique(column)), name
            assert np.array_equal(distinct[ranks], column)
