from __future__ import annotations

import io

import numpy as np

from mapreduce import codec
from mapreduce.aggregate import sum_by_key, top_k
KEYS = ("group", "song")
from mapreduce.window import WindowResult, merge_partitions


def _result(tmp_path, i: int, lines: list[tuple[int, bytes]]) -> WindowResult:
    text = b"".join(line for _, line in lines)
    (tmp_path / f"{i}.txt").write_bytes(text)
    index = {"key": np.array([k for k, _ in lines], dtype=np.uint64),
             "length": np.array([len(line) for _, line in lines], dtype=np.int64)}
    if not lines:  # what an empty slice writes
        index = {"key": sum_by_key([{"group": np.zeros(0, np.int64), "song": np.zeros(0, np.int64)}],
                                  KEYS)["group"],
                 "length": np.zeros(0, np.int64)}
    codec.save_table(str(tmp_path / f"{i}.idx"), index)
    return WindowResult("user", i, str(tmp_path / f"{i}.txt"), str(tmp_path / f"{i}.idx"),
                        len(lines), 0.0)


def test_merge_orders_huge_keys_exactly_even_beside_an_empty_partition(tmp_path):
    big = 2**62
    results = [_result(tmp_path, 0, [(big + 3, b"c\n")]), _result(tmp_path, 1, []),
               _result(tmp_path, 2, [(big + 1, b"a\n"), (big + 4, b"d\n")]),
               _result(tmp_path, 3, [(big + 2, b"b\n")])]
    out = io.BytesIO()
    assert merge_partitions(results, out) == 4
    assert out.getvalue() == b"a\nb\nc\nd\n"


def test_top_k_ranks_by_count_then_song():
    table = sum_by_key([{"group": np.array([5, 5, 5, 5, 9]), "song": np.array([30, 10, 20, 40, 1]),
                         "count": np.array([2, 2, 7, 1, 3])}], KEYS)
    best, rank = top_k(table, 2, KEYS)
    assert list(zip(best["group"].tolist(), best["song"].tolist(), best["count"].tolist())) == [
        (5, 20, 7), (5, 10, 2), (9, 1, 3)]
    assert rank.tolist() == [0, 1, 0]
