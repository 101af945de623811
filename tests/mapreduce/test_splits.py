from __future__ import annotations

import os

from hypothesis import given, settings, strategies as st

from mapreduce.splits import Split, iter_lines, plan_splits, read_blocks
from tests.oracle import split_lines

contents = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from([b"a", b"bc", b"\n", b"\r\n", b"\r", b"|", b"", b"x" * 40]),
             max_size=60).map(b"".join),
)


def _write(tmp_path, data: bytes) -> str:
    path = os.path.join(tmp_path, "f.log")
    with open(path, "wb") as f:
        f.write(data)
    return path


@settings(max_examples=300, deadline=None)
@given(data=contents, split_size=st.integers(1, 80), block_size=st.integers(1, 64))
def test_splits_yield_every_line_exactly_once(tmp_path_factory, data, split_size, block_size):
    path = _write(tmp_path_factory.mktemp("s"), data)
    lines = [line for s in plan_splits([path], split_size) for line in iter_lines(s, block_size)]
    assert lines == split_lines(data)


@settings(max_examples=200, deadline=None)
@given(data=contents, split_size=st.integers(1, 80))
def test_blocks_are_whole_lines_at_their_offsets(tmp_path_factory, data, split_size):
    path = _write(tmp_path_factory.mktemp("b"), data)
    rebuilt = b""
    for s in plan_splits([path], split_size):
        for offset, block in read_blocks(s, block_size=7):
            assert data[offset:offset + len(block)] == block
            assert block.endswith(b"\n") or offset + len(block) == len(data)
            rebuilt += block
    assert rebuilt == data


def test_empty_file_has_no_split(tmp_path):
    assert plan_splits([_write(tmp_path, b"")], 10) == []


def test_line_longer_than_split(tmp_path):
    data = b"short\n" + b"y" * 1000 + b"\nlast"
    path = _write(tmp_path, data)
    splits = plan_splits([path], 64)
    assert len(splits) == 16  # 1011 bytes
    assert [line for s in splits for line in iter_lines(s)] == [b"short", b"y" * 1000, b"last"]
    assert sum(1 for s in splits if list(iter_lines(s))) == 2  # "short" and the long line start in split 0


def test_split_describes_itself():
    assert str(Split("/a/b.log", 0, 64)) == "/a/b.log[0:64]"


def test_a_file_of_several_ranges_is_cut_into_whole_rounds_of_the_workers(tmp_path):
    path = _write(tmp_path, b"x" * 1100)
    assert len(plan_splits([path], 100)) == 11
    assert len(plan_splits([path], 100, workers=2)) == 12   # not an 11th task run alone
    assert len(plan_splits([path], 100, workers=4)) == 12
    assert len(plan_splits([path], 2000, workers=2)) == 1   # one range stays one
