"""Columns to text against Python's own formatting, at every integer width."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from mapreduce.textcols import Fixed, Int, Text, digit_counts, format_rows
from tests.mapreduce.backends import BACKENDS, backend

ints = st.one_of(st.integers(0, 9), st.integers(0, 2**32), st.integers(0, 2**64 - 1))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(ints, ints, st.booleans(), st.sampled_from([b"FR", b"US", b"ZZ"])),
                min_size=0, max_size=40))
def test_format_rows_is_the_plain_python_text(rows):
    first = np.array([r[2] for r in rows], dtype=bool)
    a = np.array([r[0] for r in rows], dtype=np.uint64)
    b = np.array([r[1] for r in rows], dtype=np.uint64)
    codes = np.array([list(r[3]) for r in rows], dtype=np.uint8).reshape(len(rows), 2)
    columns = [Fixed(codes, where=first), Int(a, where=first), Text(b"|", first), b, b":",
               Int(a), Text(b",", ~first), b"\n"]
    want = b"".join(
        (r[3] + str(r[0]).encode() + b"|" if r[2] else b"") + str(r[1]).encode() + b":"
        + str(r[0]).encode() + (b"" if r[2] else b",") + b"\n" for r in rows)
    for name in BACKENDS:
        with backend(name):
            assert format_rows(columns, len(rows)) == want, name


def test_digit_counts_at_the_powers_of_ten():
    values = np.array([0, 9, 10, 99, 100, 10**18 - 1, 10**18, 10**19, 2**64 - 1], np.uint64)
    assert digit_counts(values).tolist() == [len(str(int(v))) for v in values]
