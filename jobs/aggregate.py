"""Vectorised group-by-sum and top-K over ``(group, song, count)`` tables.

The hot operation of the whole project is sorting by the pair ``(group, song)``. When both fit in
64 bits together (ids below 2**32, or a country index and a song id below 2**56: every id the
service has seen) the pair is packed into one uint64 and sorted as a single key, with the count
in the spare low bits where it fits; otherwise a lexsort over both columns gives the same order,
slower.
"""
from __future__ import annotations

import numpy as np

from mapreduce.codec import concat_tables, narrowest


def _bits(columns: list[np.ndarray]) -> int:
    return max((int(c.max()).bit_length() for c in columns if len(c)), default=0)


def sum_by_key(group: np.ndarray | None, song: np.ndarray | None, count: np.ndarray | None = None,
               *, tables: list[dict[str, np.ndarray]] | None = None) -> dict[str, np.ndarray]:
    """One row per distinct (group, song) with the summed count, sorted by (group, song), in
    the narrowest unsigned types that hold them.

    Either columns (``count`` None means 1 per row) or ``tables`` to fold together; a table
    without a ``count`` column is raw pairs, one listen per row. Columns may be stored narrow
    (uint16, uint32): they are packed straight into the 64-bit key, never widened first.
    """
    if tables is None:
        assert group is not None and song is not None
        tables = [{"group": group, "song": song, **({"count": count} if count is not None else {})}]
    tables = [t for t in tables if len(t["group"])]
    if not tables:
        return _empty()
    song_bits = _bits([t["song"] for t in tables])
    if _bits([t["group"] for t in tables]) + song_bits > 64:
        return _sum_wide(tables)
    shift = np.uint64(song_bits)
    keys = np.concatenate([(t["group"].astype(np.uint64) << shift) | t["song"].astype(np.uint64)
                           for t in tables])
    if all("count" not in t for t in tables):
        keys, counts = np.unique(keys, return_counts=True)
    else:
        counts = np.concatenate([t["count"].astype(np.uint64) if "count" in t
                                 else np.ones(len(t["group"]), np.uint64) for t in tables])
        count_bits = _bits([counts])
        if _bits([keys]) + count_bits <= 64:
            # The count rides in the low bits of the key, so a plain (SIMD) sort of one array
            # replaces an argsort and two gathers: 5x faster on these sizes.
            keys <<= np.uint64(count_bits)
            keys |= counts
            del counts
            keys.sort()
            counts = keys & np.uint64((1 << count_bits) - 1)
            keys >>= np.uint64(count_bits)
            starts = _run_starts(keys)
            counts = np.add.reduceat(counts, starts)
        else:
            order = np.argsort(keys, kind="stable")
            keys = keys[order]
            starts = _run_starts(keys)
            counts = np.add.reduceat(counts[order], starts)
        keys = keys[starts]
    mask = np.uint64((1 << song_bits) - 1)
    return {"group": narrowest(keys >> shift), "song": narrowest(keys & mask),
            "count": narrowest(counts)}


def _run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    change = np.empty(len(sorted_keys), dtype=bool)
    change[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=change[1:])
    return np.flatnonzero(change)


def _sum_wide(tables: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The same for ids too large to pack together (both above 2**32): a two-column lexsort."""
    tables = [t if "count" in t else {**t, "count": np.ones(len(t["group"]), np.int64)}
              for t in tables]
    merged = concat_tables(tables)
    group, song, count = merged["group"], merged["song"], merged["count"]
    order = np.lexsort((song, group))
    g, s = group[order], song[order]
    change = np.ones(len(g), dtype=bool)
    change[1:] = (g[1:] != g[:-1]) | (s[1:] != s[:-1])
    starts = np.flatnonzero(change)
    return {"group": g[starts], "song": s[starts],
            "count": np.add.reduceat(count[order], starts).astype(np.int64)}


def _empty() -> dict[str, np.ndarray]:
    e = np.zeros(0, dtype=np.uint8)  # unsigned like every other result: never mixed into float
    return {"group": e, "song": e.copy(), "count": e.copy()}


def top_k(table: dict[str, np.ndarray], k: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The top ``k`` songs of each group from a table sorted by (group, song), one row per pair.

    Ranked by count descending, ties by song ascending. Returns the kept rows in (group, rank)
    order and each row's rank (0-based).
    """
    group, song, count = table["group"], table["song"], table["count"]
    n = len(group)
    if n == 0:
        return table, np.zeros(0, dtype=np.int64)
    new_group = np.empty(n, dtype=bool)
    new_group[0] = True
    np.not_equal(group[1:], group[:-1], out=new_group[1:])
    dense = np.cumsum(new_group) - 1
    group_start = np.flatnonzero(new_group)
    count_bits, song_bits = _bits([count]), _bits([song])
    if _bits([dense]) + count_bits + song_bits <= 64:
        # (group, count descending, song) packed in one uint64: a plain sort ranks every group
        u64 = np.uint64
        count_max = u64((1 << count_bits) - 1)
        packed = dense.astype(u64) << u64(count_bits + song_bits)
        packed |= (count_max - count.astype(u64)) << u64(song_bits)
        packed |= song.astype(u64)
        packed.sort()
        ranked_dense = (packed >> u64(count_bits + song_bits)).astype(np.int64)
        rank = np.arange(n) - group_start[ranked_dense]
        keep = rank < k
        packed = packed[keep]
        return ({"group": group[group_start[ranked_dense[keep]]],
                 "song": (packed & u64((1 << song_bits) - 1)).astype(np.int64),
                 "count": (count_max - ((packed >> u64(song_bits)) & count_max)).astype(np.int64)},
                rank[keep])
    order = np.lexsort((song, -count, group))
    rank = np.arange(n) - group_start[dense[order]]
    keep = order[rank < k]
    return ({"group": group[keep], "song": song[keep], "count": count[keep]}, rank[rank < k])
