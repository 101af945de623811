"""Intermediate data formats, in one place.

* Record jobs: one ``key<TAB>value`` line per pair, both compact JSON (orjson). Compact JSON never
  holds a raw tab, so the key is the text before the first tab; runs are sorted and merged by
  :func:`line_order` (integer keys as integers, the order a reader of the output expects).
* Array jobs: a table (named numpy columns) is one file of raw columns behind a small JSON
  header (format 1, a run's scratch files); columns are stored in the narrowest unsigned type
  that holds their values, which halves what the shuffle writes for the usual ids and counts.
  A store's tables are format 2 (:mod:`mapreduce.tablefile`): blocks of delta-coded, zstd
  columns, about a quarter of format 1, read as a stream.
"""
from __future__ import annotations

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


def line_order(line: bytes) -> tuple[int, int, bytes]:
    """Sort key of an encoded line: integer keys first, in numeric order (``2`` before ``10``),
    then every other key by its JSON text. Equal keys stay adjacent, so runs sorted by it group."""
    key = line.partition(b"\t")[0]
    if key[:1].isdigit() or (key[:1] == b"-" and key[1:2].isdigit()):
        try:
            return 0, int(key), b""
        except ValueError:  # a float such as 1.5
            pass
    return 1, 0, key


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


from mapreduce.tablefile import narrowest  # noqa: E402  (one definition, used by callers here)

_TABLE_MAGIC = b"MRTABLE1"


def save_table(path: str, table: dict[str, np.ndarray], *, compact: bool = False) -> tuple[int, int]:
    """Write a table; returns ``(bytes written, crc32 of them)``, the checksum a reader verifies.

    ``compact`` writes the block-coded, compressed format of :mod:`mapreduce.tablefile` (what a
    store keeps: a year of it must fit a disk); otherwise format 1, the fastest to write and
    read, for a run's short-lived files: magic, a 4-byte header length, a JSON header
    ``[[name, dtype, rows], ...]``, then each column's raw bytes in its narrowest type.
    """
    if compact:
        from mapreduce.tablefile import write_table

        return write_table(path, table)
    columns = [(name, np.ascontiguousarray(narrowest(col))) for name, col in table.items()]
    header = orjson.dumps([[name, col.dtype.str, len(col)] for name, col in columns])
    head = _TABLE_MAGIC + len(header).to_bytes(4, "little") + header
    crc, size = zlib.crc32(head), len(head)
    with open(path, "wb") as f:
        f.write(head)
        for _, col in columns:
            data = memoryview(col).cast("B")
            f.write(data)
            crc = zlib.crc32(data, crc)
            size += len(data)
    return size, crc


class ChecksumError(Exception):
    """A stored table's bytes do not match the checksum recorded when it was written."""


def load_table(path: str, crc32: int | None = None) -> dict[str, np.ndarray]:
    """Read a table of either format (read-only columns); with ``crc32``, raise
    :class:`ChecksumError` unless the bytes match it."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        if crc32 is None:
            raise
        # a table its writer recorded (with a checksum) and that is gone: damage like any other
        raise ChecksumError(f"{path}: missing (deleted from disk)") from None
    if crc32 is not None and zlib.crc32(data) != crc32:
        raise ChecksumError(f"{path}: checksum mismatch (truncated or altered on disk)")
    if data[:8] == b"MRTABLE2":
        import io

        from mapreduce.tablefile import Damaged, TableReader, read_whole

        try:
            return read_whole(TableReader(io.BytesIO(data), path, len(data)))
        except Damaged as exc:
            raise ChecksumError(f"{path}: unreadable table ({exc})") from exc
    try:
        if data[:8] != _TABLE_MAGIC:
            raise ValueError("not a table file")
        header_len = int.from_bytes(data[8:12], "little")
        offset = 12 + header_len
        table = {}
        for name, dtype, rows in orjson.loads(data[12:offset]):
            col = np.frombuffer(data, dtype=np.dtype(dtype), count=rows, offset=offset)
            table[name] = col
            offset += col.nbytes
        if offset != len(data):
            raise ValueError(f"{len(data) - offset} bytes beyond the last column")
        return table
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
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
