"""Vectorised aggregates over tables keyed by a pair of non-negative integer columns.

``sum_by_key`` (one row per distinct pair, counts summed), ``distinct_by_key`` (the pairs
alone: a union) and ``top_k`` (the best K items of each group) are the building blocks of the
window steps; the column names are the caller's (``KEYS`` and ``COUNT`` by default).

    (group, item, count) rows ──pack──▶ one uint64 per row, ordered as (group, item)
        ──sort──▶ equal keys side by side ──reduceat──▶ one row per pair ──unpack──▶ columns

The hot operation is that sort. numpy sorts one uint64 array with SIMD, several times faster
than an argsort and far faster than a two-column lexsort, so everything is packed into one:
``group << item_bits | item``, with the count in the spare low bits where it fits. Ids too wide
to share 64 bits (a 19-digit user id beside a 10-digit song id) are replaced first by their
dense rank among the rows at hand: ranks keep the order, and a few million rows need ~22 bits.
Only when even ranks and count cannot share 64 bits does a stable argsort carry the count.

With the compiled kernels (``mapreduce.kernels``) ranks come from a hash probe per row, or, for
tables each sorted by group (a window's day tables), from walking each table beside the sorted
union of their groups; the packing and the summing of equal keys are one loop each; ``top_k``
sorts a group of at most K rows by insertion and keeps a bounded heap for a larger one. The
numpy code below each is the reference they are tested with.
"""
from __future__ import annotations

import numpy as np

from mapreduce import kernels
from mapreduce.codec import narrowest

KEYS = ("group", "item")
COUNT = "count"
_U64 = np.uint64


def _bits(columns: list[np.ndarray]) -> int:
    return max((int(c.max()).bit_length() for c in columns if len(c)), default=0)


def _run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    if not len(sorted_keys):
        return np.zeros(0, dtype=np.intp)
    change = np.empty(len(sorted_keys), dtype=bool)
    change[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=change[1:])
    return np.flatnonzero(change)


def dense_rank(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ranks, values)``: each row's rank among the distinct values of ``column`` (uint64, in
    row order) and those values, sorted. ``values[ranks]`` is the column again."""
    n = len(column)
    if kernels.enabled() and n:
        # one hash probe per row, then a sort of the distinct values alone
        ids, seen = _hash_ids(column.astype(_U64, copy=False), (2 * n - 1).bit_length())
        order = np.argsort(seen)
        rank_of = np.empty(len(seen), dtype=_U64)
        rank_of[order] = np.arange(len(seen), dtype=_U64)
        return rank_of[ids], seen[order]
    index_bits = max(n - 1, 0).bit_length()
    if _bits([column]) + index_bits <= 64:
        # the row number rides in the low bits, so a plain sort stands in for an argsort
        keyed = column.astype(_U64) << _U64(index_bits)
        keyed |= np.arange(n, dtype=_U64)
        keyed.sort()
        rows = keyed & _U64((1 << index_bits) - 1)
        keyed >>= _U64(index_bits)
        ordered = keyed
    else:
        ordered = np.sort(column)
        values = ordered[_run_starts(ordered)]
        if len(values) * 16 <= n:
            # few distinct values (a window's users, say): a binary search in a table small
            # enough to stay in cache beats an argsort of every row
            return np.searchsorted(values, column).astype(_U64), values
        rows = np.argsort(column)
        ordered = column[rows]
    first_of_value = _run_starts(ordered)
    starts = np.zeros(n, dtype=_U64)
    starts[first_of_value] = 1
    ranks = np.empty(n, dtype=_U64)
    ranks[rows] = np.cumsum(starts, out=starts) - _U64(1)
    return ranks, ordered[first_of_value]


@kernels.kernel
def _hash_ids(column: np.ndarray, table_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's id among the distinct values (in order of first appearance) and those
    values, by open addressing in a table of 2**table_bits slots (at least twice the rows)."""
    n = len(column)
    size = 1 << table_bits
    slot_id = np.full(size, -1, np.int64)
    slot_value = np.empty(size, np.uint64)
    ids = np.empty(n, np.int64)
    seen = np.empty(n, np.uint64)
    distinct = 0
    mask = np.uint64(size - 1)
    drop = np.uint64(64 - table_bits)
    for i in range(n):
        value = column[i]
        h = (value * np.uint64(0x9E3779B97F4A7C15)) >> drop & mask
        while True:
            found = slot_id[h]
            if found < 0:
                slot_id[h] = distinct
                slot_value[h] = value
                seen[distinct] = value
                ids[i] = distinct
                distinct += 1
                break
            if slot_value[h] == value:
                ids[i] = found
                break
            h = (h + np.uint64(1)) & mask
    return ids, seen[:distinct]


class _KeyColumn:
    """One key column as packable codes: its own values, or their dense ranks."""

    def __init__(self, column: np.ndarray) -> None:
        self.codes = column.astype(_U64, copy=False)
        self.values: np.ndarray | None = None
        self.bits = _bits([self.codes])

    def rank(self) -> None:
        self.codes, self.values = dense_rank(self.codes)
        self.bits = max(len(self.values) - 1, 0).bit_length()

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return narrowest(codes if self.values is None else self.values[codes])


def _pack(high: np.ndarray, low: np.ndarray, low_bits: int) -> np.ndarray:
    if low_bits >= 64:  # then high is all zero; a shift by 64 is undefined
        return low.copy()
    packed = high << _U64(low_bits)
    packed |= low
    return packed


def _unpack(packed: np.ndarray, low_bits: int) -> tuple[np.ndarray, np.ndarray]:
    if low_bits >= 64:
        return np.zeros(len(packed), dtype=_U64), packed
    return packed >> _U64(low_bits), packed & _U64((1 << low_bits) - 1)


def sum_by_key(tables: list[dict[str, np.ndarray]], keys: tuple[str, str] = KEYS,
               count: str = COUNT) -> dict[str, np.ndarray]:
    """One row per distinct ``keys`` pair with the summed ``count``, sorted by the pair, in the
    narrowest unsigned types that hold them.

    A table without a ``count`` column is raw pairs, one occurrence per row. Keys and counts
    are non-negative integers of any width up to 64 bits.
    """
    g, s = keys
    tables = [t for t in tables if len(t[g])]
    if not tables:
        return _empty(keys, count)
    if kernels.enabled():
        merged = _sum_runs_by_group(tables, keys, count)
        if merged is not None:
            return merged
    group = _KeyColumn(_concat([t[g] for t in tables]))
    item = _KeyColumn(_concat([t[s] for t in tables]))
    with_counts = any(count in t for t in tables)
    counts = (_concat([t[count] if count in t else np.ones(len(t[g]), _U64) for t in tables])
              if with_counts else None)
    count_bits = _bits([counts]) if counts is not None else 0
    while group.bits + item.bits + count_bits > 64:
        unranked = [c for c in (group, item) if c.values is None]
        if not unranked:
            break
        max(unranked, key=lambda c: c.bits).rank()
    item_bits = item.bits
    packed = _pack(group.codes, item.codes, item_bits)
    del group.codes, item.codes
    if counts is None:
        packed.sort()
        starts = _run_starts(packed)
        counts = np.diff(np.append(starts, len(packed)))
    elif group.bits + item_bits + count_bits <= 64:
        # the count rides in the low bits: one plain sort, no argsort and gathers
        packed <<= _U64(count_bits)
        packed |= counts
        del counts
        packed.sort()
        counts = packed & _U64((1 << count_bits) - 1)
        packed >>= _U64(count_bits)
        starts = _run_starts(packed)
        counts = np.add.reduceat(counts, starts)
    else:
        order = np.argsort(packed, kind="stable")
        packed = packed[order]
        starts = _run_starts(packed)
        counts = np.add.reduceat(counts[order], starts)
    high, low = _unpack(packed[starts], item_bits)
    return {g: group.decode(high), s: item.decode(low), count: narrowest(counts)}


def _sum_runs_by_group(tables: list[dict[str, np.ndarray]], keys: tuple[str, str],
                       count: str) -> dict[str, np.ndarray] | None:
    """``sum_by_key`` for tables each sorted by group (a window's day tables), in three passes:
    every row packed as (group's rank, item, count) into one uint64, a SIMD sort, one loop
    summing equal keys. The ranks come from walking each table beside the sorted union of
    groups, not from a search. None when the tables are not so sorted or do not fit."""
    g, s = keys
    groups = [t[g].astype(_U64, copy=False) for t in tables]
    if not all(_is_sorted(column) for column in groups):
        return None
    # each table's groups are sorted: one SIMD sort of their starts and a pass drop repeats
    # (np.unique hashes first, twice the time here)
    distinct = np.sort(np.concatenate([column[_run_starts(column)] for column in groups]))
    distinct = distinct[_run_starts(distinct)]
    rank_bits = max(len(distinct) - 1, 0).bit_length()
    item_top = max((int(t[s].max()) for t in tables if len(t[s])), default=0)
    item_bits = item_top.bit_length()
    count_bits = max(_bits([t[count] for t in tables if count in t]), 1)
    if rank_bits + item_bits + count_bits > 64:
        return None
    packed = np.empty(sum(len(column) for column in groups), dtype=_U64)
    at = 0
    for table, column in zip(tables, groups):
        counts = table[count] if count in table else np.ones(1, dtype=_U64)
        _pack_run(column, table[s].astype(_U64, copy=False), counts.astype(_U64, copy=False),
                  count in table, distinct, item_bits, count_bits, packed[at:at + len(column)])
        at += len(column)
    packed.sort()
    # written straight in the narrowest types the groups and items need (no copy to narrow)
    group = np.empty(len(packed), dtype=narrowest(distinct[-1:]).dtype)
    item = np.empty(len(packed), dtype=narrowest(np.array([item_top], dtype=_U64)).dtype)
    counts = np.empty(len(packed), dtype=_U64)
    rows = _sum_packed(packed, distinct, item_bits, count_bits, group, item, counts)
    return {g: group[:rows], s: item[:rows], count: narrowest(counts[:rows])}


@kernels.kernel
def _is_sorted(column: np.ndarray) -> bool:
    for i in range(1, len(column)):
        if column[i] < column[i - 1]:
            return False
    return True


@kernels.kernel
def _pack_run(group: np.ndarray, item: np.ndarray, counts: np.ndarray, counted: bool,
              distinct: np.ndarray, item_bits: int, count_bits: int, out: np.ndarray) -> None:
    rank = 0
    one = np.uint64(1)
    for i in range(len(group)):
        while distinct[rank] < group[i]:
            rank += 1
        key = (np.uint64(rank) << np.uint64(item_bits)) | item[i]
        out[i] = (key << np.uint64(count_bits)) | (counts[i] if counted else one)


@kernels.kernel
def _sum_packed(packed: np.ndarray, distinct: np.ndarray, item_bits: int, count_bits: int,
                group: np.ndarray, item: np.ndarray, counts: np.ndarray) -> int:
    """Sum the counts of equal (rank, item) keys of ``packed`` (sorted) into the outputs;
    returns the rows written."""
    count_mask = (np.uint64(1) << np.uint64(count_bits)) - np.uint64(1)
    item_mask = (np.uint64(1) << np.uint64(item_bits)) - np.uint64(1)
    out = -1
    previous = np.uint64(0)
    for i in range(len(packed)):
        key = packed[i] >> np.uint64(count_bits)
        if out < 0 or key != previous:
            out += 1
            previous = key
            group[out] = distinct[key >> np.uint64(item_bits)]
            item[out] = key & item_mask
            counts[out] = packed[i] & count_mask
        else:
            counts[out] += packed[i] & count_mask
    return out + 1


def _concat(columns: list[np.ndarray]) -> np.ndarray:
    if len(columns) == 1:
        return columns[0].astype(_U64)  # a copy: the packing works in place
    return np.concatenate([c.astype(_U64, copy=False) for c in columns])


def distinct_by_key(tables: list[dict[str, np.ndarray]],
                    keys: tuple[str, str] = KEYS) -> dict[str, np.ndarray]:
    """The distinct ``keys`` pairs of all tables (a union), sorted, without counts."""
    summed = sum_by_key([{k: t[k] for k in keys} for t in tables], keys, "_n")
    return {k: summed[k] for k in keys}


def count_per_group(table: dict[str, np.ndarray], group: str,
                    count: str = COUNT) -> dict[str, np.ndarray]:
    """Rows per value of ``group`` in a table sorted by it: ``{group: ..., count: ...}``."""
    column = table[group]
    if not len(column):
        return {group: column, count: np.zeros(0, np.uint8)}
    starts = _run_starts(column)
    counts = np.diff(np.append(starts, len(column)))
    return {group: column[starts], count: narrowest(counts)}


def _empty(keys: tuple[str, str], count: str) -> dict[str, np.ndarray]:
    e = np.zeros(0, dtype=np.uint8)  # unsigned like every other result: never mixed into float
    return {keys[0]: e, keys[1]: e.copy(), count: e.copy()}


def top_k(table: dict[str, np.ndarray], k: int, keys: tuple[str, str] = KEYS,
          count: str = COUNT) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The top ``k`` items of each group from a table sorted by ``keys``, one row per pair.

    Ranked by count descending, ties by item ascending. Returns the kept rows in (group, rank)
    order and each row's rank (0-based).
    """
    g, s = keys
    group, counts = table[g], table[count]
    n = len(group)
    if n == 0:
        return table, np.zeros(0, dtype=np.int64)
    if kernels.enabled() and _bits([counts]) + (n - 1).bit_length() <= 64:
        rows, rank = _top_k_kernel(group.astype(_U64, copy=False), counts.astype(_U64),
                                   min(k, n), (n - 1).bit_length())
        return {g: group[rows], s: table[s][rows], count: counts[rows]}, rank
    group_start = _run_starts(group)
    dense = np.zeros(n, dtype=_U64)
    dense[group_start] = 1
    np.cumsum(dense, out=dense)
    dense -= _U64(1)
    count_bits, row_bits = _bits([counts]), (n - 1).bit_length()
    dense_bits = (len(group_start) - 1).bit_length()
    if dense_bits + count_bits + row_bits <= 64:
        # (group, count descending, row) in one uint64: the table is sorted by (group, item),
        # so within a group the row number orders ties by item, whatever the items' width
        count_max = _U64((1 << count_bits) - 1)
        packed = _pack(dense, count_max - counts.astype(_U64), count_bits)
        packed = _pack(packed, np.arange(n, dtype=_U64), row_bits)
        packed.sort()
        ranked_group, rows = _unpack(packed, row_bits)
        ranked_group >>= _U64(count_bits)
        rank = np.arange(n) - group_start[ranked_group]
    else:
        rows = np.lexsort((table[s], ~counts.astype(_U64), group))  # ~c: count descending
        rank = np.arange(n) - group_start[dense[rows]]
    keep = rank < k
    rows = rows[keep]
    return {g: group[rows], s: table[s][rows], count: counts[rows]}, rank[keep]


@kernels.kernel
def _top_k_kernel(group: np.ndarray, counts: np.ndarray, k: int,
                  row_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per run of equal ``group``: the ``k`` rows of most count, ties by row (item) order.

    A group of at most ``k`` rows (nearly every user) keeps all its rows, sorted by insertion:
    its keys mostly arrive ascending (count 1, rows in order), so that costs a comparison a row.
    A larger group (a country's songs) goes through a bounded max-heap of (count descending,
    row) keys: a comparison per row, not a sort."""
    n = len(group)
    rows = np.empty(n, np.int64)
    ranks = np.empty(n, np.int64)
    heap = np.empty(k, np.uint64)
    shift = np.uint64(row_bits)
    mask = (np.uint64(1) << shift) - np.uint64(1)
    top = np.uint64(0)
    for i in range(n):
        top = max(top, counts[i])
    kept = 0
    lo = 0
    while lo < n:
        hi = lo + 1
        while hi < n and group[hi] == group[lo]:
            hi += 1
        size = min(hi - lo, k)
        for r in range(lo, lo + size):
            heap[r - lo] = ((top - counts[r]) << shift) | np.uint64(r - lo)
        if hi - lo > k:
            # heapify (sift down from each inner node), then each key below the heap's
            # largest replaces it and sifts down: one sift loop serves both
            start, r = k // 2 - 1, lo + k
            while True:
                if start >= 0:
                    i = start
                    start -= 1
                else:
                    if r >= hi:
                        break
                    key = ((top - counts[r]) << shift) | np.uint64(r - lo)
                    r += 1
                    if key >= heap[0]:
                        continue
                    heap[0] = key
                    i = 0
                while True:
                    child = 2 * i + 1
                    if child >= k:
                        break
                    if child + 1 < k and heap[child + 1] > heap[child]:
                        child += 1
                    if heap[i] >= heap[child]:
                        break
                    heap[i], heap[child] = heap[child], heap[i]
                    i = child
        if size > 64:  # below this, insertion beats the call into a sort (measured)
            heap[:size].sort()
        else:
            for i in range(1, size):
                key = heap[i]
                j = i - 1
                while j >= 0 and heap[j] > key:
                    heap[j + 1] = heap[j]
                    j -= 1
                heap[j + 1] = key
        for t in range(size):
            rows[kept] = lo + np.int64(heap[t] & mask)
            ranks[kept] = t
            kept += 1
        lo = hi
    return rows[:kept], ranks[:kept]

