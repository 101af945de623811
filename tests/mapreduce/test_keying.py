"""Keyed tables (mapreduce.keying, mapreduce.sortedruns): a day's table stored as row numbers
into its block's table reads back as the day's own rows, streamed with the block's table, in
any key ranges, with the block's rows no longer needed let go."""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from mapreduce import kernels
from mapreduce.keying import match_rows
from mapreduce.sortedruns import KEY_COLUMN, SortedRuns
from mapreduce.tablefile import TableWriter


def _day(rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    group = rng.integers(1, 60, rows).astype(np.uint64)
    song = rng.integers(10**9, 10**9 + 400, rows).astype(np.uint64)
    pairs = np.unique(np.stack([group, song], axis=1), axis=0)
    return {"group": pairs[:, 0].copy(), "song": pairs[:, 1].copy(),
            "count": rng.integers(1, 5, len(pairs)).astype(np.uint32)}


def _block(days: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    group = np.concatenate([d["group"] for d in days])
    song = np.concatenate([d["song"] for d in days])
    count = np.concatenate([d["count"] for d in days]).astype(np.uint64)
    pairs, where = np.unique(np.stack([group, song], axis=1), axis=0, return_inverse=True)
    return {"group": pairs[:, 0].copy(), "song": pairs[:, 1].copy(),
            "count": np.bincount(where.ravel(), weights=count).astype(np.uint64)}


def _write(path, table, block_rows=50) -> None:
    writer = TableWriter(str(path), block_rows)
    writer.append(table)
    writer.close()


def test_keyed_days_read_back_as_the_days_in_every_key_range(tmp_path):
    rng = np.random.default_rng(7)
    days = [_day(rng, 900) for _ in range(5)]
    block = _block(days)
    _write(tmp_path / "block.tbl", block, block_rows=64)
    inputs = [(str(tmp_path / "plain.tbl"), None)]
    _write(tmp_path / "plain.tbl", days[0])
    for i, day in enumerate(days[1:], 1):
        keyed = {KEY_COLUMN: match_rows(block, day, ("group", "song")).astype(np.uint64),
                 "count": day["count"]}
        _write(tmp_path / f"keyed{i}.tbl", keyed, block_rows=37)
        inputs.append((str(tmp_path / f"keyed{i}.tbl"), None, str(tmp_path / "block.tbl"), None))
    most_held = 0
    got: list[list[dict[str, np.ndarray]]] = [[] for _ in days]
    with SortedRuns(inputs, "group", budget=300) as runs:
        stream = next(iter(runs.streams.values()))
        chunks = 0
        for _, parts in runs.chunk_runs():
            chunks += 1
            for i, table in parts:
                got[i].append(table)
                most_held = max(most_held, stream.held)
    assert chunks > 5
    for day, parts in zip(days, got):
        back = {n: np.concatenate([p[n] for p in parts]) for n in day}
        assert list(back) == ["group", "song", "count"]
        for n in day:
            np.testing.assert_array_equal(back[n], day[n])
    # the block's rows are let go as the keyed days move past them
    assert most_held < len(block["group"]) / 2


def test_closed_runs_let_go_of_their_rows_without_the_cycle_collector(tmp_path):
    rng = np.random.default_rng(9)
    days = [_day(rng, 600) for _ in range(3)]
    block = _block(days)
    _write(tmp_path / "block.tbl", block)
    inputs = []
    for i, day in enumerate(days):
        _write(tmp_path / f"keyed{i}.tbl", {
            KEY_COLUMN: match_rows(block, day, ("group", "song")).astype(np.uint64),
            "count": day["count"]})
        inputs.append((str(tmp_path / f"keyed{i}.tbl"), None, str(tmp_path / "block.tbl"), None))
    gc.collect()
    gc.disable()  # a worker's next task may run before the collector does
    try:
        with SortedRuns(inputs, "group", budget=200) as runs:
            stream = weakref.ref(next(iter(runs.streams.values())))
            for _, parts in runs.chunk_runs():
                for _ in parts:
                    break       # leaves rows read and not handed out in the runs
        del runs, parts
        assert stream() is None
    finally:
        gc.enable()


def test_a_keyed_table_needs_its_block_table(tmp_path):
    rng = np.random.default_rng(8)
    day = _day(rng, 300)
    block = _block([day, _day(rng, 300)])
    _write(tmp_path / "block.tbl", block)
    _write(tmp_path / "keyed.tbl", {KEY_COLUMN: match_rows(block, day, ("group", "song"))
                                    .astype(np.uint64), "count": day["count"]})
    (tmp_path / "block.tbl").unlink()
    from mapreduce.codec import ChecksumError
    with pytest.raises(ChecksumError, match="block.tbl: missing"):
        SortedRuns([(str(tmp_path / "keyed.tbl"), None, str(tmp_path / "block.tbl"), None)],
                   "group")


@pytest.mark.parametrize("kernel_backend", ["numba", "numpy"])
def test_match_rows_finds_each_key_and_refuses_a_missing_one(monkeypatch, kernel_backend):
    monkeypatch.setenv(kernels.ENV, kernel_backend)
    rng = np.random.default_rng(9)
    days = [_day(rng, 500) for _ in range(3)]
    block = _block(days)
    for day in days:
        at = match_rows(block, day, ("group", "song"))
        np.testing.assert_array_equal(block["group"][at], day["group"])
        np.testing.assert_array_equal(block["song"][at], day["song"])
    stranger = {n: c[:3].copy() for n, c in days[0].items()}
    stranger["group"][2] = np.uint64(999)   # still sorted; a group no day has
    with pytest.raises(ValueError, match=r"key \(999, \d+\) is not in its block's table"):
        match_rows(block, stranger, ("group", "song"))
