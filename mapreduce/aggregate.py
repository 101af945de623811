"""Vectorised aggregates over tables keyed by a pair of unsigned integer columns.

``sum_by_key`` (one row per distinct pair, counts summed), ``distinct_by_key`` (the pairs
alone: a union) and ``top_k`` (the best K items of each group) are the building blocks of the
window steps; the column names are the caller's (``KEYS`` and ``COUNT`` by default).

The hot operation is sorting by the pair ``(group, item)``. When both fit in 64 bits together
(ids below 2**32, or a small group index and an item id below 2**56) the pair is packed into one
uint64 and sorted as a single key, with the count in the spare low bits where it fits; otherwise
a lexsort over both columns gives the same order, slower.
"""
from __future__ import annotations

import numpy as np

from mapreduce.codec import concat_tables, narrowest

KEYS = ("group", "item")
COUNT = "count"


def _bits(columns: list[np.ndarray]) -> int:
    return max((int(c.max()).bit_length() for c in columns if len(c)), default=0)


def sum_by_key(tables: list[dict[str, np.ndarray]], keys: tuple[str, str] = KEYS,
               count: str = COUNT) -> dict[str, np.ndarray]:
    """One row per distinct ``keys`` pair with the summed ``count``, sorted by the pair, in the
    narrowest unsigned types that hold them.

    A table without a ``count`` column is raw pairs, one occurrence per row. Columns may be
    stored narrow (uint16, uint32): they are packed straight into the 64-bit key, never widened
    first.
    """
    g, s = keys
    tables = [t for t in tables if len(t[g])]
    if not tables:
        return _empty(keys, count)
    song_bits = _bits([t[s] for t in tables])
    if _bits([t[g] for t in tables]) + song_bits > 64:
        return _sum_wide(tables, keys, count)
    shift = np.uint64(song_bits)
    packed = np.concatenate([(t[g].astype(np.uint64) << shift) | t[s].astype(np.uint64)
                             for t in tables])
    if all(count not in t for t in tables):
        packed, counts = np.unique(packed, return_counts=True)
    else:
        counts = np.concatenate([t[count].astype(np.uint64) if count in t
                                 else np.ones(len(t[g]), np.uint64) for t in tables])
        count_bits = _bits([counts])
        if _bits([packed]) + count_bits <= 64:
            # The count rides in the low bits of the key, so a plain (SIMD) sort of one array
            # replaces an argsort and two gathers: 5x faster on these sizes.
            packed <<= np.uint64(count_bits)
            packed |= counts
            del counts
            packed.sort()
            counts = packed & np.uint64((1 << count_bits) - 1)
            packed >>= np.uint64(count_bits)
            starts = _run_starts(packed)
            counts = np.add.reduceat(counts, starts)
        else:
            order = np.argsort(packed, kind="stable")
            packed = packed[order]
            starts = _run_starts(packed)
            counts = np.add.reduceat(counts[order], starts)
        packed = packed[starts]
    mask = np.uint64((1 << song_bits) - 1)
    return {g: narrowest(packed >> shift), s: narrowest(packed & mask), count: narrowest(counts)}


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


def _run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    change = np.empty(len(sorted_keys), dtype=bool)
    change[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=change[1:])
    return np.flatnonzero(change)


def _sum_wide(tables: list[dict[str, np.ndarray]], keys: tuple[str, str],
              count: str) -> dict[str, np.ndarray]:
    """The same for ids too large to pack together (both above 2**32): a two-column lexsort."""
    g, s = keys
    tables = [{g: t[g], s: t[s], count: t[count] if count in t else np.ones(len(t[g]), np.int64)}
              for t in tables]
    merged = concat_tables(tables)
    group, song, counts = merged[g], merged[s], merged[count]
    order = np.lexsort((song, group))
    gs, ss = group[order], song[order]
    change = np.ones(len(gs), dtype=bool)
    change[1:] = (gs[1:] != gs[:-1]) | (ss[1:] != ss[:-1])
    starts = np.flatnonzero(change)
    return {g: gs[starts], s: ss[starts],
            count: np.add.reduceat(counts[order], starts).astype(np.int64)}


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
    group, song, counts = table[g], table[s], table[count]
    n = len(group)
    if n == 0:
        return table, np.zeros(0, dtype=np.int64)
    new_group = np.empty(n, dtype=bool)
    new_group[0] = True
    np.not_equal(group[1:], group[:-1], out=new_group[1:])
    dense = np.cumsum(new_group) - 1
    group_start = np.flatnonzero(new_group)
    count_bits, song_bits = _bits([counts]), _bits([song])
    if _bits([dense]) + count_bits + song_bits <= 64:
        # (group, count descending, item) packed in one uint64: a plain sort ranks every group
        u64 = np.uint64
        count_max = u64((1 << count_bits) - 1)
        packed = dense.astype(u64) << u64(count_bits + song_bits)
        packed |= (count_max - counts.astype(u64)) << u64(song_bits)
        packed |= song.astype(u64)
        packed.sort()
        ranked_dense = (packed >> u64(count_bits + song_bits)).astype(np.int64)
        rank = np.arange(n) - group_start[ranked_dense]
        keep = rank < k
        packed = packed[keep]
        return ({g: group[group_start[ranked_dense[keep]]],
                 s: (packed & u64((1 << song_bits) - 1)).astype(np.int64),
                 count: (count_max - ((packed >> u64(song_bits)) & count_max)).astype(np.int64)},
                rank[keep])
    order = np.lexsort((song, -counts.astype(np.int64), group))
    rank = np.arange(n) - group_start[dense[order]]
    keep = order[rank < k]
    return ({g: group[keep], s: song[keep], count: counts[keep]}, rank[rank < k])
