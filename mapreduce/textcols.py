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

from mapreduce import kernels

_POW10 = np.array([10**k for k in range(20)], dtype=np.uint64)


def digit_counts(values: np.ndarray) -> np.ndarray:
    """Decimal digits of each non-negative integer (0 has one)."""
    v = values.astype(np.uint64, copy=False)
    # one binary search among the powers of ten, not a comparison pass per power
    return np.searchsorted(_POW10[1:], v, side="right").astype(np.int64) + 1


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
    if kernels.enabled():
        return _format_compiled(slots, rows)
    lengths = [_lengths(col, rows) for col in slots]
    row_lengths = sum(lengths)
    row_ends = np.cumsum(row_lengths, dtype=np.int64)
    total = int(row_ends[-1])
    out = np.empty(total, dtype=np.uint8)     # every byte is placed at its final offset
    index = np.int32 if total < 2**31 else np.int64  # half the memory traffic when it fits
    cursor = (row_ends - row_lengths).astype(index)  # each row's start, advanced column by column
    del row_ends, row_lengths
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
                          length if shown is None else length[shown])
        cursor += length.astype(index, copy=False)
    return out.tobytes()


def _format_compiled(slots: list[Text | Fixed | Int], rows: int) -> bytes:
    """Two passes of compiled loops per column: each row's length summed (an integer column's
    digit counts kept, a byte a row), then each column written at every row's cursor, which it
    advances. No gather, mask or index array per column, as the numpy path needs."""
    masks = [np.ones(0, bool) if col.where is None else col.where for col in slots]
    datas = [_as_bytes(col) for col in slots]
    row_len = np.zeros(rows, dtype=np.int64)
    digits: list[np.ndarray | None] = []
    for col, data, mask in zip(slots, datas, masks):
        if isinstance(col, Int):
            digits.append(np.zeros(rows, dtype=np.int8))
            _add_digit_counts(data, mask, row_len, digits[-1])
        else:
            digits.append(None)
            _add_width(data.shape[-1], mask, row_len)
    cursor = np.cumsum(row_len) - row_len
    out = np.empty(int(cursor[-1] + row_len[-1]), dtype=np.uint8)
    for col, data, mask, count in zip(slots, datas, masks, digits):
        if count is not None:
            _write_digits(out, cursor, data, mask, count)
        else:
            _write_bytes(out, cursor, data.reshape(-1, data.shape[-1]), mask)
    return out.tobytes()


def _as_bytes(col: Text | Fixed | Int) -> np.ndarray:
    if isinstance(col, Text):
        return np.frombuffer(col.data, dtype=np.uint8).reshape(1, -1)
    if isinstance(col, Fixed):
        return np.ascontiguousarray(col.data, dtype=np.uint8)
    return col.data


@kernels.kernel
def _add_digit_counts(values: np.ndarray, mask: np.ndarray, row_len: np.ndarray,
                      digits: np.ndarray) -> None:
    """Each shown row's digit count, kept in ``digits`` and added to its length."""
    masked = len(mask) > 0
    for i in range(len(values)):
        if masked and not mask[i]:
            continue
        v = np.uint64(values[i])
        d = 1
        while d < 20 and v >= _POW10[d]:
            d += 1
        digits[i] = d
        row_len[i] += d


@kernels.kernel
def _add_width(width: int, mask: np.ndarray, row_len: np.ndarray) -> None:
    masked = len(mask) > 0
    for i in range(len(row_len)):
        if not masked or mask[i]:
            row_len[i] += width


@kernels.kernel
def _write_digits(out: np.ndarray, cursor: np.ndarray, values: np.ndarray, mask: np.ndarray,
                  digits: np.ndarray) -> None:
    masked = len(mask) > 0
    ten = np.uint64(10)
    for i in range(len(values)):
        if masked and not mask[i]:
            continue
        v = np.uint64(values[i])
        d = np.int64(digits[i])
        p = cursor[i] + d - 1
        for _ in range(d):
            q = v // ten
            out[p] = np.uint8(48 + (v - q * ten))
            v = q
            p -= 1
        cursor[i] += d


@kernels.kernel
def _write_bytes(out: np.ndarray, cursor: np.ndarray, data: np.ndarray, mask: np.ndarray) -> None:
    """Row i's bytes (``data[i]``, or ``data[0]`` on every row for a constant) at its cursor."""
    masked = len(mask) > 0
    width = data.shape[1]
    same = data.shape[0] == 1
    for i in range(len(cursor)):
        if masked and not mask[i]:
            continue
        row = 0 if same else i
        at = cursor[i]
        for j in range(width):
            out[at + j] = data[row, j]
        cursor[i] = at + width


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


def _place_digits(out: np.ndarray, at: np.ndarray, values: np.ndarray,
                  length: np.ndarray) -> None:
    """Write ``values`` in decimal, right-aligned in the ``length`` bytes from ``at``."""
    if not len(values):
        return
    if kernels.enabled():
        _place_digits_kernel(out, at, values.astype(np.uint64, copy=False),
                             length.astype(np.int64, copy=False))
        return
    # rows by digit count, most first: digit j is then wanted by a prefix of the rows, so each
    # digit position is a division and a scatter over a shrinking slice, with no masks
    order = np.argsort(-length.astype(np.int8), kind="stable")
    last = (at + (length - 1).astype(at.dtype))[order]  # each row's units digit
    wanted = np.bincount(length, minlength=21)[::-1].cumsum()[::-1]  # rows with >= k digits
    v = values[order].astype(np.uint64, copy=False)
    # 32-bit division vectorises far better: ids past 2**32 are cut into their last nine
    # digits and the rest, each small enough
    pieces = [(v.astype(np.uint32), 0)]
    if len(v) and int(v.max()) >= 2**32:
        high, low = np.divmod(v, np.uint64(10**9))
        pieces = [(low.astype(np.uint32), 0), (_narrow32(high), 9)]
    top = int(length.max())
    for i, (part, first) in enumerate(pieces):
        ten = part.dtype.type(10)
        for j in range(first, top if i == len(pieces) - 1 else min(top, 9)):
            rows = int(wanted[j + 1])
            part, digit = np.divmod(part[:rows], ten)
            digit += 48
            out[last[:rows] - j] = digit


def _narrow32(values: np.ndarray) -> np.ndarray:
    return values.astype(np.uint32) if int(values.max()) < 2**32 else values


@kernels.kernel
def _place_digits_kernel(out: np.ndarray, at: np.ndarray, values: np.ndarray,
                         length: np.ndarray) -> None:
    ten = np.uint64(10)
    for i in range(len(values)):
        v = values[i]
        p = at[i] + length[i] - 1
        for _ in range(length[i]):
            q = v // ten
            out[p] = np.uint8(48 + (v - q * ten))
            v = q
            p -= 1
