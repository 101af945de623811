from __future__ import annotations

import numpy as np

from mapreduce.aggregate import sum_by_key, top_k

KEYS = ("group", "song")


def test_top_k_ranks_by_count_then_song():
    table = sum_by_key([{"group": np.array([5, 5, 5, 5, 9]), "song": np.array([30, 10, 20, 40, 1]),
                         "count": np.array([2, 2, 7, 1, 3])}], KEYS)
    best, rank = top_k(table, 2, KEYS)
    assert list(zip(best["group"].tolist(), best["song"].tolist(), best["count"].tolist())) == [
        (5, 20, 7), (5, 10, 2), (9, 1, 3)]
    assert rank.tolist() == [0, 1, 0]
