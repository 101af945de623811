"""Numeric columns to text without a Python call per row.

Each column's length on every row is known first (digit counts, constant text), so each row's
offset in the output is a cumulative sum, and every column is scattered straight to its bytes:
one vectorised division and one scatter per digit position. A column shown on few rows (a line's
prefix) costs only those rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

_POW10 = np.array([10**k for k in range(20)], dtype=np.uint64)


def digit_counts(values: np.ndarray) -> np.ndarray:
    """Decimal digits of each non-negative integer (0 has one)."""
    v = values.astype(np.uint64, copy=False)
    n = np.ones(len(v), dtype=np.int64)
    top = int(v.max()) if len(v) else 0
    for k in range(1, 20):
        if _POW10[k] > top:
            break
        n += v >= _POW10[k]
    return n


@dataclass(frozen=True)
class Text:
    """A constant byte string, optionally only on the rows where ``where`` is true."""

    data: bytes
    where: np.ndarray | None = None


@dataclass(frozen=True)
class Fixed:
    """Fixed-width bytes per row: an ``(n, width)`` uint8 array (e.g. two-letter codes)."""

    data: np.ndarray
    where: np.ndarray | None = None


@dataclass(frozen=True)
class Int:
    """A non-negative integer column in decimal, optionally only where ``where`` is true."""

    data: np.ndarray
    where: np.ndarray | None = None


Column = Union[Text, Fixed, Int, bytes, np.ndarray]


def format_rows(columns: Sequence[Column], rows: int) -> bytes:
    """The concatenated text of ``rows`` rows; each row is its columns back to back."""
    if rows == 0:
        return b""
    slots: list[Text | Fixed | Int] = []
    for col in columns:
        if isinstance(col, bytes):
            col = Text(col)
        elif isinstance(col, np.ndarray):
            col = Int(col)
        slots.append(col)
    lengths = [_lengths(col, rows) for col in slots]
    row_ends = np.cumsum(sum(lengths), dtype=np.int64)
    total = int(row_ends[-1])
    # every byte is placed at its final offset; a row's unused digit positions land on the
    # one spare byte past the end, so that each digit position is one unmasked scatter
    out = np.empty(total + 1, dtype=np.uint8)
    cursor = row_ends
    cursor -= sum(lengths)                     # each row's start, advanced column by column
    for col, length in zip(slots, lengths):
        shown = None if col.where is None else np.flatnonzero(col.where)
        at = cursor if shown is None else cursor[shown]
        if isinstance(col, Text):
            for j, byte in enumerate(col.data):
                out[at + j] = byte
        elif isinstance(col, Fixed):
            data = col.data if shown is None else col.data[shown]
            for j in range(data.shape[1]):
                out[at + j] = data[:, j]
        else:
            _place_digits(out, at, col.data if shown is None else col.data[shown],
                          length if shown is None else length[shown], total)
        cursor += length
    return out[:total].tobytes()


def _lengths(col: Text | Fixed | Int, rows: int) -> np.ndarray:
    if isinstance(col, Text):
        length = np.full(rows, len(col.data), dtype=np.int64)
    elif isinstance(col, Fixed):
        length = np.full(rows, col.data.shape[1], dtype=np.int64)
    else:
        length = digit_counts(col.data)
    if col.where is not None:
        length = np.where(col.where, length, 0)
    return length


def _place_digits(out: np.ndarray, at: np.ndarray, values: np.ndarray, length: np.ndarray,
                  spare: int) -> None:
    """Write ``values`` in decimal, right-aligned in the ``length`` bytes from ``at``."""
    if not len(values):
        return
    small = int(values.max()) < 2**32
    dtype = np.uint32 if small else np.uint64  # 32-bit division vectorises far better
    v = values.astype(dtype, copy=True)
    ten = dtype(10)
    last = at + length - 1                     # the units digit's offset
    for j in range(int(length.max())):
        v, digit = np.divmod(v, ten)
        digit += 48
        where = last - j
        if j:
            where[length <= j] = spare
        out[where] = digit
