"""Vectorised group-by-sum and top-K over ``(group, song, count)`` tables.

The hot operation of the whole project is sorting by the pair ``(group, song)``. When both fit in
64 bits together (always, for real ids and for country indices) the pair is packed into one
uint64 and sorted as a single key; otherwise a lexsort over both columns gives the same order.
"""
from __future__ import annotations

import numpy as np

from mapreduce.codec import concat_tables


def _bits(column: np.ndarray) -> int:
    return int(column.max()).bit_length() if len(column) else 0


def sum_by_key(group: np.ndarray | None, song: np.ndarray | None, count: np.ndarray | None = None,
               *, tables: list[dict[str, np.ndarray]] | None = None) -> dict[str, np.ndarray]:
    """One row per distinct (group, song) with the summed count, sorted by (group, song).

    Either columns (``count`` None means 1 per row) or ``tables`` to concatenate first.
    """
    if tables is not None:
        if all("count" not in t for t in tables):  # raw pairs: every row counts one
            tables = [{"group": t["group"], "song": t["song"]} for t in tables]
        else:
            tables = [t if "count" in t else {**t, "count": np.ones(len(t["group"]), np.int64)}
                      for t in tables]
        merged = concat_tables(tables)
        if not merged:
            return _empty()
        group, song, count = merged["group"], merged["song"], merged.get("count")
    assert group is not None and song is not None
    if len(group) == 0:
        return _empty()
    song_bits = _bits(song)
    if _bits(group) + song_bits <= 64:
        key = (group.astype(np.uint64) << np.uint64(song_bits)) | song.astype(np.uint64)
        if count is None:
            keys, counts = np.unique(key, return_counts=True)
            mask = np.uint64((1 << song_bits) - 1)
            return {"group": (keys >> np.uint64(song_bits)).astype(np.int64),
                    "song": (keys & mask).astype(np.int64), "count": counts.astype(np.int64)}
        order = np.argsort(key, kind="stable")  # stable: fast on runs of sorted inputs
        key = key[order]
        change = np.flatnonzero(key[1:] != key[:-1]) + 1
    else:
        order = np.lexsort((song, group))
        g, s = group[order], song[order]
        change = np.flatnonzero((g[1:] != g[:-1]) | (s[1:] != s[:-1])) + 1
    starts = np.concatenate(([0], change))
    first = order[starts]
    counts = (np.add.reduceat(count[order], starts) if count is not None
              else np.diff(np.append(starts, len(order))))
    return {"group": group[first].astype(np.int64), "song": song[first].astype(np.int64),
            "count": counts.astype(np.int64)}


def _empty() -> dict[str, np.ndarray]:
    e = np.zeros(0, dtype=np.int64)
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
    if int(count.max()) < 2**32 and len(dense) and int(dense[-1]) < 2**32:
        # rows are already in song order within each group; a stable sort on
        # (group, -count) therefore breaks count ties by song ascending
        key = (dense.astype(np.uint64) << np.uint64(32)) | (np.uint64(2**32 - 1)
                                                           - count.astype(np.uint64))
        order = np.argsort(key, kind="stable")
    else:
        order = np.lexsort((song, -count, group))
    group_start = np.flatnonzero(new_group)
    rank = np.arange(n) - group_start[dense[order]]
    keep = order[rank < k]
    return ({"group": group[keep], "song": song[keep], "count": count[keep]}, rank[rank < k])
