"""Intermediate data formats, in one place.

* Record jobs: one ``key<TAB>value`` line per pair, both compact JSON (orjson). Compact JSON never
  holds a raw tab and a tab sorts below every byte JSON puts in a key, so sorting whole lines
  bytewise sorts them by encoded key: runs merge with ``heapq.merge`` on the lines themselves.
* Array jobs: a table (named numpy columns) is one uncompressed ``.npz`` file; columns are stored
  in the narrowest unsigned type that holds their values, which halves what the shuffle and the
  store write for the usual ids and counts.
"""
from __future__ import annotations

import io
import zipfile
import zlib
from typing import Any, Iterable, Iterator

import numpy as np
import orjson

_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def encode(value: Any) -> bytes:
    return orjson.dumps(value, option=_OPTS)


def decode(data: bytes) -> Any:
    return orjson.loads(data)


def encode_pair(key: Any, value: Any) -> bytes:
    return encode(key) + b"\t" + encode(value) + b"\n"


def split_pair(line: bytes) -> tuple[bytes, bytes]:
    """``(key bytes, value bytes)`` of one encoded line (trailing newline allowed)."""
    key, _, value = line.rstrip(b"\n").partition(b"\t")
    return key, value


def write_lines(path: str, lines: Iterable[bytes]) -> int:
    n = 0
    with open(path, "wb", buffering=1 << 20) as f:
        for line in lines:
            f.write(line)
            n += 1
    return n


def read_lines(path: str) -> Iterator[bytes]:
    with open(path, "rb", buffering=1 << 20) as f:
        yield from f


def narrowest(column: np.ndarray) -> np.ndarray:
    """The column in the smallest unsigned integer type holding all its (non-negative) values."""
    if column.dtype.kind not in "iu" or column.size == 0:
        return column
    top = int(column.max())
    if int(column.min()) < 0:
        return column
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if top <= np.iinfo(dtype).max:
            return column.astype(dtype, copy=False)
    return column


def save_table(path: str, table: dict[str, np.ndarray]) -> tuple[int, int]:
    """Write a table; returns ``(bytes written, crc32 of them)``, the checksum a reader verifies."""
    buffer = io.BytesIO()
    np.savez(buffer, **{name: narrowest(col) for name, col in table.items()})
    data = buffer.getbuffer()
    with open(path, "wb") as f:
        f.write(data)
    return len(data), zlib.crc32(data)


class ChecksumError(Exception):
    """A stored table's bytes do not match the checksum recorded when it was written."""


def load_table(path: str, crc32: int | None = None) -> dict[str, np.ndarray]:
    """Read a table; with ``crc32``, raise :class:`ChecksumError` unless the bytes match it."""
    with open(path, "rb") as f:
        data = f.read()
    if crc32 is not None and zlib.crc32(data) != crc32:
        raise ChecksumError(f"{path}: checksum mismatch (truncated or altered on disk)")
    try:
        with np.load(io.BytesIO(data)) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ChecksumError(f"{path}: unreadable table ({exc})") from exc


def table_rows(table: dict[str, np.ndarray]) -> int:
    for col in table.values():
        return len(col)
    return 0


def concat_tables(tables: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Row-wise concatenation; integer columns come back as int64 (stored narrow, computed wide:
    mixing uint64 with int64 would make numpy promote to float64 and lose exactness)."""
    tables = [t for t in tables if table_rows(t)]
    if not tables:
        return {}
    return {n: np.concatenate([_wide(t[n]) for t in tables]) for n in tables[0]}


def _wide(column: np.ndarray) -> np.ndarray:
    return column.astype(np.int64, copy=False) if column.dtype.kind in "iu" else column
