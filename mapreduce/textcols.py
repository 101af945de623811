"""Numeric columns to text without a Python call per row.

Rows are laid out in a byte matrix, one fixed-width slot per column, digits right-aligned, with a
mask of the bytes that belong to the row; ``matrix[mask]`` (row-major) is then the text of all rows
back to back. Integer formatting is a few vectorised divisions per digit.
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
    slots = []
    for col in columns:
        if isinstance(col, bytes):
            col = Text(col)
        elif isinstance(col, np.ndarray):
            col = Int(col)
        slots.append(col)
    widths, lengths = [], []
    for col in slots:
        if isinstance(col, Text):
            width = len(col.data)
            length = np.full(rows, width, dtype=np.int64)
        elif isinstance(col, Fixed):
            width = col.data.shape[1]
            length = np.full(rows, width, dtype=np.int64)
        else:
            length = digit_counts(col.data)
            if col.where is not None:
                length = np.where(col.where, length, 0)
            width = int(length.max()) if rows else 0
        if col.where is not None:
            length = np.where(col.where, length, 0)
        widths.append(width)
        lengths.append(length)
    total = sum(widths)
    matrix = np.empty((rows, total), dtype=np.uint8)
    mask = np.empty((rows, total), dtype=bool)
    start = 0
    for col, width, length in zip(slots, widths, lengths):
        if width == 0:
            continue
        block = matrix[:, start:start + width]
        # bytes of a slot used by a row are its last `length` positions
        np.greater(length.astype(np.uint8)[:, None],
                   np.arange(width - 1, -1, -1, dtype=np.uint8), out=mask[:, start:start + width])
        if isinstance(col, Text):
            block[:] = np.frombuffer(col.data, dtype=np.uint8)
        elif isinstance(col, Fixed):
            block[:] = col.data
        else:
            # digits only for the rows that show the column (a line's prefix is on few rows)
            rows_shown = None if col.where is None else np.flatnonzero(col.where)
            values = col.data if rows_shown is None else col.data[rows_shown]
            small = values.size == 0 or int(values.max()) < 2**32
            dtype = np.uint32 if small else np.uint64  # 32-bit division vectorises far better
            v = values.astype(dtype, copy=True)
            digits = np.empty((len(v), width), dtype=np.uint8)
            ten = dtype(10)
            for j in range(width - 1, -1, -1):
                v, digit = np.divmod(v, ten)
                digits[:, j] = digit
            digits += 48
            if rows_shown is None:
                block[:] = digits
            else:
                block[rows_shown] = digits
        start += width
    return matrix[mask].tobytes()
