"""The window's building blocks without any job: the compact table format, reading several
sorted tables by key ranges, and the parallel merge of partitions' lines."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest

from mapreduce import codec, kernels
from mapreduce.sortedruns import SortedRuns, plan_cuts
from mapreduce.tablefile import TableWriter, write_table
from mapreduce.window import WindowResult, concatenate, merge_tasks, run_merge
from tests.mapreduce.backends import BACKENDS


def _sorted_table(rng: np.random.Generator, rows: int, group_top: int, item_top: int):
    group = rng.integers(0, group_top, rows, dtype=np.uint64)
    item = rng.integers(0, item_top, rows, dtype=np.uint64)
    order = np.lexsort((item, group))
    return {"group": group[order], "item": item[order],
            "count": rng.integers(1, 300, rows).astype(np.uint16)}


@pytest.mark.parametrize("kernel_backend", BACKENDS)
@pytest.mark.parametrize("group_top,item_top", [(50, 10**6), (2**40, 10**10), (2**64 - 1, 2**63)])
def test_compact_table_round_trips_exactly_across_blocks(tmp_path, monkeypatch, group_top,
                                                         item_top, kernel_backend):
    monkeypatch.setenv(kernels.ENV, kernel_backend)
    rng = np.random.default_rng(group_top % 1000)
    table = _sorted_table(rng, 5000, group_top, item_top)
    table["signed"] = rng.integers(-5, 5, 5000)
    table["ratio"] = rng.random(5000)
    path = str(tmp_path / "t.tbl")
    size, crc = write_table(path, table, block_rows=700)
    assert size == os.path.getsize(path)
    back = codec.load_table(path, crc)
    for name, col in table.items():
        assert back[name].dtype == codec.narrowest(col).dtype
        assert np.array_equal(back[name], col)


def test_compact_table_is_smaller_than_format_1_and_keeps_empty_tables(tmp_path):
    rng = np.random.default_rng(3)
    table = _sorted_table(rng, 20000, 3000, 2 * 10**6)
    table["count"] = rng.geometric(0.7, 20000).astype(np.uint16)  # mostly 1, as listens are
    raw, _ = codec.save_table(str(tmp_path / "raw.tbl"), table)
    small, crc = codec.save_table(str(tmp_path / "small.tbl"), table, compact=True)
    assert small < raw / 2
    empty = {"group": np.zeros(0, np.int64), "item": np.zeros(0, np.int64)}
    _, crc = codec.save_table(str(tmp_path / "e.tbl"), empty, compact=True)
    back = codec.load_table(str(tmp_path / "e.tbl"), crc)
    assert list(back) == ["group", "item"] and all(len(c) == 0 for c in back.values())


@pytest.mark.parametrize("where", ["block", "footer", "tail"])
def test_any_flipped_byte_of_a_compact_table_is_a_checksum_error(tmp_path, where):
    rng = np.random.default_rng(5)
    path = tmp_path / "t.tbl"
    _, crc = write_table(str(path), _sorted_table(rng, 3000, 100, 10**6), block_rows=1000)
    data = bytearray(path.read_bytes())
    at = {"block": 40, "footer": len(data) - 40, "tail": len(data) - 3}[where]
    data[at] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(codec.ChecksumError):
        codec.load_table(str(path), crc)
    with pytest.raises(codec.ChecksumError, match="t.tbl"), \
            SortedRuns([(str(path), crc)], "group", budget=500) as runs:
        for _ in runs.chunks():
            pass


def test_sorted_runs_read_each_row_once_by_whole_groups(tmp_path):
    """Streamed tables (several blocks), a format-1 table and an unsorted one, read by small
    key ranges: every row comes out exactly once, and no group is split between chunks."""
    rng = np.random.default_rng(7)
    inputs, tables = [], []
    for i in range(5):
        t = _sorted_table(rng, int(rng.integers(0, 4000)), 400, 1000)
        tables.append(t)
        path = str(tmp_path / f"{i}.tbl")
        if i == 3:
            _, crc = codec.save_table(path, t)  # format 1: read whole
        else:
            w = TableWriter(path, block_rows=256)
            w.append(t)
            _, crc = w.close()
        inputs.append((path, crc))
    unsorted = {k: v[::-1].copy() for k, v in _sorted_table(rng, 900, 400, 1000).items()}
    tables.append(unsorted)
    _, crc = codec.save_table(str(tmp_path / "u.tbl"), unsorted, compact=True)
    inputs.append((str(tmp_path / "u.tbl"), crc))

    seen, last_group, chunks = [], -1, 0
    with SortedRuns(inputs, "group", budget=1500) as runs:
        for chunk in runs.chunks():
            chunks += 1
            groups = np.concatenate([t["group"] for t in chunk]).astype(np.int64)
            assert groups.min() > last_group  # ranges follow each other, never overlap
            last_group = int(groups.max())
            seen.append(np.concatenate([np.stack([t["group"].astype(np.int64),
                                                  t["item"].astype(np.int64),
                                                  t["count"].astype(np.int64)]) for t in chunk],
                                       axis=1))
    assert chunks > 5
    got = np.concatenate(seen, axis=1)
    want = np.concatenate([np.stack([t["group"].astype(np.int64), t["item"].astype(np.int64),
                                     t["count"].astype(np.int64)]) for t in tables], axis=1)
    key = lambda a: a[:, np.lexsort(a[::-1])]  # noqa: E731
    assert np.array_equal(key(got), key(want))


def test_plan_cuts_never_cut_inside_one_key():
    assert plan_cuts([(5, 1000), (5, 1000), (5, 1000)], 10) == []
    assert plan_cuts([(1, 10), (2, 10), (3, 10), (4, 10)], 20) == [3]


def _result(tmp_path, i: int, lines: list[tuple[int, bytes]]) -> WindowResult:
    text = b"".join(line for _, line in lines)
    stem = tmp_path / f"p{i}"
    (tmp_path / f"p{i}.txt").write_bytes(text)
    np.array([k for k, _ in lines], dtype=np.uint64).tofile(f"{stem}.keys")
    np.cumsum([len(line) for _, line in lines], dtype=np.int64).tofile(f"{stem}.ends")
    return WindowResult("user", i, f"{stem}.txt", f"{stem}.keys", f"{stem}.ends", len(lines),
                        len(text), 0.0)


@pytest.mark.parametrize("kernel_backend", BACKENDS)
@pytest.mark.parametrize("ranges_of", [1, 150])
def test_merge_by_key_ranges_orders_huge_keys_exactly(tmp_path, monkeypatch, ranges_of,
                                                      kernel_backend):
    import mapreduce.window as window

    monkeypatch.setenv(kernels.ENV, kernel_backend)
    monkeypatch.setattr(window, "MERGE_SMALL_LINES", 0)
    monkeypatch.setattr(window, "MERGE_TASK_LINES", ranges_of)
    rng = np.random.default_rng(11)
    keys = np.unique(rng.integers(2**63, 2**64 - 1, 400, dtype=np.uint64))
    owner = rng.integers(0, 4, len(keys))
    results = [_result(tmp_path, p, [(int(k), f"{k}|x{'y' * int(k % 7)}\n".encode())
                                     for k in keys[owner == p]]) for p in range(4)]
    results.append(_result(tmp_path, 4, []))  # an empty partition
    tasks = merge_tasks(results, "user", workers=2, scratch=str(tmp_path))
    assert len(tasks) > 2  # cut into ranges, each a task (with 1 line a task: one per line)
    parts = [run_merge(t) for t in tasks]
    out = tmp_path / "out.txt"
    with open(out, "wb") as f:
        f.write(b"head\n")
        assert concatenate(parts, f) == len(keys)
        f.write(b"tail\n")
    assert out.read_bytes() == b"head\n" + b"".join(
        f"{k}|x{'y' * int(k % 7)}\n".encode() for k in keys) + b"tail\n"


def test_concatenate_copies_through_memory_where_the_kernel_cannot(tmp_path, monkeypatch):
    part = tmp_path / "part"
    part.write_bytes(b"a\nb\n")
    monkeypatch.delattr(os, "copy_file_range", raising=False)
    from mapreduce.window import MergeResult

    buffer = io.BytesIO()
    buffer.fileno = lambda: -1  # type: ignore[method-assign]
    assert concatenate([MergeResult("c", 0, str(part), 2, 4)], buffer) == 2
    assert buffer.getvalue() == b"a\nb\n"


@pytest.mark.parametrize("kernel_backend", BACKENDS)
def test_compact_table_round_trips_columns_that_fall_inside_a_run(tmp_path, monkeypatch,
                                                                  kernel_backend):
    # the "r" coding needs each run's later column not to decrease; when one does, it is not used
    monkeypatch.setenv(kernels.ENV, kernel_backend)
    table = {"group": np.array([1, 1, 1, 2, 2, 7], dtype=np.uint64),
             "item": np.array([5, 9, 3, 2**40, 1, 0], dtype=np.uint64),
             "count": np.array([3, 1, 2, 1, 1, 70000], dtype=np.uint32)}
    path = str(tmp_path / "t.tbl")
    size, crc = write_table(path, table, block_rows=4)
    back = codec.load_table(path, crc)
    for name, col in table.items():
        assert np.array_equal(back[name], col), name


def test_a_group_far_above_the_budget_is_folded_a_batch_at_a_time(tmp_path):
    """One group (a country over months) in 30 tables cannot be cut: its chunk is combined a
    batch at a time, never every table at once, to the same sum as all the rows together;
    chunks within the budget are one combine, as before."""
    from mapreduce.aggregate import sum_by_key
    from mapreduce.sortedruns import fold

    rng = np.random.default_rng(11)
    inputs, tables = [], []
    for i in range(30):
        big = {"group": np.full(2000, 5, dtype=np.uint64),
               "item": np.sort(rng.choice(2500, 2000, replace=False)).astype(np.uint64),
               "count": rng.integers(1, 9, 2000).astype(np.uint16)}
        small = _sorted_table(rng, 50, 4, 1000)       # groups 0-3, before the big one
        later = _sorted_table(rng, 50, 4, 1000)
        later["group"] = later["group"] + np.uint64(9)  # groups 9-12, after it
        table = {k: np.concatenate([small[k], big[k], later[k]]) for k in big}
        tables.append(table)
        path = str(tmp_path / f"{i}.tbl")
        w = TableWriter(path, block_rows=256)
        w.append(table)
        inputs.append((path, w.close()[1]))

    calls: list[int] = []

    def combine(parts):
        calls.append(sum(codec.table_rows(p) for p in parts))
        return sum_by_key(parts, ("group", "item"))

    budget = 3000
    results, sizes = [], []
    with SortedRuns(inputs, "group", budget=budget) as runs:
        for expected, parts in runs.chunk_parts():
            before = len(calls)
            done = fold(parts, combine, budget, expected)
            if done is not None:
                results.append(done)
                sizes.append((expected, calls[before:]))
    folded = [(e, c) for e, c in sizes if len(c) > 1]
    assert len(folded) == 1 and folded[0][0] > 2 * budget  # the big group's chunk, folded
    # each combine holds the result so far (at most 2,500 songs) and about a budget of rows
    # more, never the 60,000 rows of the group at once
    assert sum(folded[0][1]) > 30 * 2000 and max(folded[0][1]) < 10_000
    assert all(len(c) == 1 for e, c in sizes if e <= 2 * budget)
    got = sum_by_key(results, ("group", "item"))
    want = sum_by_key(tables, ("group", "item"))
    for name in want:
        assert np.array_equal(got[name].astype(np.int64), want[name].astype(np.int64)), name
