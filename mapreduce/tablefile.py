"""The compact table file (format 2): blocks of rows, each column coded and compressed apart,
written and read as a stream, with a crc32 of every byte.

    "MRTABLE2" | block 0: column 0 bytes, column 1 bytes, ... | block 1 ... |
    footer (JSON) | footer length (u32 LE) | footer crc32 (u32 LE) | "MRTABLE2"

The footer names the columns (and the type each decodes to) and, per block, its rows, the
first and last value of column 0, its crc32 and each column's coding and byte count: a reader
plans from the (verified) footer alone which blocks hold a range of keys, then reads the blocks
in file order, each once and checked before it is decoded, while the crc32 of the whole file
(the one a store's manifest records) is fed as it goes and compared at the end.

Codings, chosen per block and column (the smallest of those that apply is kept):

* ``z``: the column in its narrowest type, bytes shuffled (all first bytes, then all second
  bytes...) and zstd-compressed: ids of one magnitude share their high bytes, which then
  compress to almost nothing;
* ``d``: column 0 when the block is sorted by it (the group): differences from the previous
  row (the block's first value is in the footer), narrow, shuffled, zstd;
* ``r``: a later column, sorted within each run of rows whose earlier columns are equal (the
  item of a (group, item) table): the difference from the previous row inside a run, the
  value itself where a run starts;
* ``raw``: the narrow bytes alone, when compression does not pay.

Measured on a day of the benchmark's logs (sorted (group, song, count) tables): 8.3 bytes a
row raw and narrow (format 1), 2.2 with these codings.
"""
from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import orjson
import zstandard

from mapreduce import kernels

MAGIC = b"MRTABLE2"
BLOCK_ROWS = 16384   # rows per block: what a streaming reader holds per open table
ZSTD_LEVEL = 1       # level 3 saves under 1 % more on these columns, at twice the time
_TAIL = 16           # footer length, footer crc32, magic


def narrowest(column: np.ndarray) -> np.ndarray:
    """The column in the smallest unsigned integer type holding its (non-negative) values."""
    if column.dtype.kind not in "iu":
        return column
    if column.size == 0:
        return column.astype(np.uint8)
    if int(column.min()) < 0:
        return column
    top = int(column.max())
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if top <= np.iinfo(dtype).max:
            return column.astype(dtype, copy=False)
    return column


def _shuffle(col: np.ndarray) -> bytes:
    if col.itemsize == 1:
        return col.tobytes()
    return np.ascontiguousarray(col.view(np.uint8).reshape(-1, col.itemsize).T).tobytes()


def _unshuffle(data: bytes, dtype: np.dtype, rows: int) -> np.ndarray:
    raw = np.frombuffer(data, dtype=np.uint8)
    if dtype.itemsize == 1:
        return raw.view(dtype)
    return np.ascontiguousarray(raw.reshape(dtype.itemsize, rows).T).view(dtype).ravel()


class TableWriter:
    """Append tables (all with the same columns) to a compact table file; ``close`` writes the
    footer and returns ``(bytes, crc32)``. Rows are cut into blocks of ``block_rows``."""

    def __init__(self, path: str, block_rows: int = BLOCK_ROWS) -> None:
        self.path = path
        self.block_rows = block_rows
        self._f: BinaryIO = open(path, "wb")
        self._crc = 0
        self._size = 0
        self._columns: list[str] | None = None
        self._dtypes: dict[str, np.dtype] = {}
        self._blocks: list[list[Any]] = []
        self._compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self._write(MAGIC)

    def _write(self, data: bytes) -> None:
        self._f.write(data)
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)

    def append(self, table: dict[str, np.ndarray]) -> None:
        names = list(table)
        if self._columns is None:
            self._columns = names
        elif names != self._columns:
            raise ValueError(f"{self.path}: columns {names} after {self._columns}")
        for name in names:  # the type a whole-table reader gets, as format 1 stored it
            dtype = narrowest(table[name]).dtype if len(table[name]) else table[name].dtype
            if table[name].dtype.kind in "iu" and len(table[name]) == 0:
                dtype = np.dtype(np.uint8)
            known = self._dtypes.get(name)
            self._dtypes[name] = dtype if known is None else np.promote_types(known, dtype)
        rows = len(table[names[0]]) if names else 0
        for lo in range(0, rows, self.block_rows):
            self._block({n: table[n][lo:lo + self.block_rows] for n in names})

    def _block(self, block: dict[str, np.ndarray]) -> None:
        cols = list(block.values())
        rows = len(cols[0])
        first = cols[0]
        meta: list[Any] = [rows, None, None, False, 0, []]
        if first.dtype.kind in "iu":
            meta[1], meta[2] = int(first[0]), int(first[-1])
            meta[3] = bool(np.all(first[1:] >= first[:-1]))
        same = np.zeros(rows, dtype=bool)   # rows whose earlier columns equal the previous row's
        crc = 0
        for j, col in enumerate(cols):
            coding, data, dtype = self._encode(col, j, same, meta[3])
            self._write(data)
            crc = zlib.crc32(data, crc)
            meta[5].append([coding, dtype.str, len(data)])
            if j == len(cols) - 1:  # the run flags are for the next column's "r" coding
                break
            if j == 0:
                same[1:] = col[1:] == col[:-1]
            else:
                same[1:] &= col[1:] == col[:-1]
        meta[4] = crc
        self._blocks.append(meta)

    def _encode(self, col: np.ndarray, j: int, same: np.ndarray,
                sorted_first: bool) -> tuple[str, bytes, np.dtype]:
        stored = narrowest(col)
        if kernels.enabled() and stored.dtype.kind == "u" and len(stored) > 1:
            return self._encode_compiled(stored, j, same, sorted_first)
        raw = np.ascontiguousarray(stored).tobytes()
        best = ("raw", raw)
        delta = None
        if stored.dtype.kind == "u" and len(stored) > 1:
            wide = stored.astype(np.uint64)
            if j == 0 and sorted_first:
                delta = np.diff(wide, prepend=wide[:1])
            elif j > 0 and same[1:].any():
                step = np.diff(wide, prepend=wide[:1])
                if np.all(wide[1:][same[1:]] >= wide[:-1][same[1:]]):
                    delta = np.where(same, step, wide)
        # a delta of sorted values is narrower than the values, and compresses better: trying
        # both doubled the time of writing a store's tables to save well under 1 %
        candidates = [("z", stored)] if delta is None else [("d" if j == 0 else "r",
                                                             narrowest(delta))]
        for coding, values in candidates:
            packed = self._compressor.compress(_shuffle(values))
            if len(packed) < len(best[1]):
                best = (coding, packed, values.dtype)  # type: ignore[assignment]
        if best[0] == "raw":
            return "raw", raw, stored.dtype
        return best[0], best[1], best[2]  # type: ignore[misc]

    def _encode_compiled(self, stored: np.ndarray, j: int, same: np.ndarray,
                         sorted_first: bool) -> tuple[str, bytes, np.dtype]:
        """The same codings, chosen by the same rule, in two compiled passes."""
        coding = "d" if j == 0 and sorted_first else "r" if j > 0 else "z"
        values = np.empty(len(stored), dtype=np.uint64)
        top, usable = _delta_kernel(stored.astype(np.uint64, copy=False), "zdr".index(coding),
                                    same, values)
        dtype = stored.dtype
        if coding != "z" and usable:
            dtype = narrowest(np.array([top], dtype=np.uint64)).dtype
        else:  # as they are: a run decreased part way through ``values``
            coding = "z"
            values = stored.astype(np.uint64)
        shuffled = np.empty(len(values) * dtype.itemsize, dtype=np.uint8)
        _shuffle_kernel(values, dtype.itemsize, shuffled)
        packed = self._compressor.compress(shuffled)
        if len(packed) < stored.nbytes:
            return coding, packed, dtype
        return "raw", stored.tobytes(), stored.dtype

    def close(self) -> tuple[int, int]:
        columns = self._columns or []
        sorted_all = all(b[3] for b in self._blocks) and all(
            a[2] <= b[1] for a, b in zip(self._blocks, self._blocks[1:]))
        footer = orjson.dumps({
            "columns": [[n, self._dtypes[n].str] for n in columns],
            "rows": sum(b[0] for b in self._blocks), "sorted": sorted_all,
            "blocks": self._blocks})
        self._write(footer + len(footer).to_bytes(4, "little")
                    + zlib.crc32(footer).to_bytes(4, "little") + MAGIC)
        self._f.close()
        return self._size, self._crc

    def abort(self) -> None:
        self._f.close()


def write_table(path: str, table: dict[str, np.ndarray],
                block_rows: int = BLOCK_ROWS) -> tuple[int, int]:
    writer = TableWriter(path, block_rows)
    try:
        writer.append(table)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


class Damaged(ValueError):
    """A compact table's bytes are not a table (its reader names the path)."""


@dataclass(frozen=True)
class Block:
    rows: int
    first: int | None
    last: int | None
    offset: int
    crc32: int
    columns: tuple[tuple[str, np.dtype, int], ...]   # (coding, dtype, bytes)

    @property
    def size(self) -> int:
        return sum(n for *_, n in self.columns)


class TableReader:
    """A compact table read block by block in file order; every byte feeds the crc32, which
    :meth:`verify` compares once the last block is read."""

    def __init__(self, f: BinaryIO, path: str, size: int) -> None:
        self.path, self._f = path, f
        if size < len(MAGIC) + _TAIL:
            raise Damaged("shorter than a table")
        f.seek(size - _TAIL)
        tail = f.read(_TAIL)
        if tail[8:] != MAGIC:
            raise Damaged("no table footer")
        footer_len = int.from_bytes(tail[:4], "little")
        footer_at = size - _TAIL - footer_len
        if footer_at < len(MAGIC):
            raise Damaged("footer length beyond the file")
        f.seek(footer_at)
        self._footer_bytes = f.read(footer_len) + tail
        if zlib.crc32(self._footer_bytes[:footer_len]) != int.from_bytes(tail[4:8], "little"):
            raise Damaged("checksum mismatch in the footer (truncated or altered on disk)")
        try:
            footer = orjson.loads(self._footer_bytes[:footer_len])
            self.names = [n for n, _ in footer["columns"]]
            self.dtypes = {n: np.dtype(d) for n, d in footer["columns"]}
            self.sorted = bool(footer["sorted"])
            offset = len(MAGIC)
            self.blocks: list[Block] = []
            for rows, first, last, _, crc, cols in footer["blocks"]:
                block = Block(int(rows), first, last, offset, int(crc),
                              tuple((c, np.dtype(d), int(n)) for c, d, n in cols))
                if len(block.columns) != len(self.names):
                    raise Damaged("a block's columns differ from the footer's")
                self.blocks.append(block)
                offset += block.size
        except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
            raise Damaged(f"unreadable footer ({exc})") from None
        if offset != footer_at:
            raise Damaged(f"blocks end at byte {offset}, the footer starts at {footer_at}")
        self.rows = sum(b.rows for b in self.blocks)
        f.seek(0)
        head = f.read(len(MAGIC))
        self._crc = zlib.crc32(head)
        self.next_block = 0
        self._decompressor = zstandard.ZstdDecompressor()

    def read_block(self) -> dict[str, np.ndarray]:
        """The next block's columns (in file order; each block is read once)."""
        block = self.blocks[self.next_block]
        data = self._f.read(block.size)
        if len(data) != block.size:
            raise Damaged("truncated block")
        self._crc = zlib.crc32(data, self._crc)
        if zlib.crc32(data) != block.crc32:
            raise Damaged(f"checksum mismatch in block {self.next_block} (altered on disk)")
        self.next_block += 1
        out: dict[str, np.ndarray] = {}
        at = 0
        same = np.zeros(block.rows, dtype=bool)
        for j, (name, (coding, dtype, nbytes)) in enumerate(zip(self.names, block.columns)):
            piece = data[at:at + nbytes]
            at += nbytes
            try:
                col = self._decode(piece, coding, dtype, block, same)
            except (zstandard.ZstdError, ValueError) as exc:
                raise Damaged(f"column {name!r} of block {self.next_block - 1}: {exc}") from None
            out[name] = col.astype(self.dtypes[name], copy=False)
            if block.rows > 1 and j < len(self.names) - 1:  # what the next column's "r" needs
                if j == 0:
                    same[1:] = col[1:] == col[:-1]
                else:
                    same[1:] &= col[1:] == col[:-1]
        return out

    def _decode(self, piece: bytes, coding: str, dtype: np.dtype, block: Block,
                same: np.ndarray) -> np.ndarray:
        rows = block.rows
        if coding == "raw":
            if len(piece) != rows * dtype.itemsize:
                raise ValueError("wrong length")
            return np.frombuffer(piece, dtype=dtype)
        data = self._decompressor.decompress(piece, max_output_size=rows * dtype.itemsize)
        if len(data) != rows * dtype.itemsize:
            raise ValueError("wrong length")
        if kernels.enabled() and dtype.kind == "u" and dtype.itemsize > 1 \
                and coding in ("z", "d", "r"):
            out = np.empty(rows, dtype=np.uint64)
            _decode_kernel(np.frombuffer(data, dtype=np.uint8), dtype.itemsize, "zdr".index(coding),
                           np.uint64(block.first or 0), same, out)
            return out
        values = _unshuffle(data, dtype, rows)
        if coding == "z":
            return values
        steps = values.astype(np.uint64)
        if coding == "d":
            with np.errstate(over="ignore"):
                return np.cumsum(steps, dtype=np.uint64) + np.uint64(block.first or 0)
        if coding == "r":  # a cumulative sum restarted at every run start
            starts = np.flatnonzero(~same)
            with np.errstate(over="ignore"):
                total = np.cumsum(steps, dtype=np.uint64)
                base = total[starts] - steps[starts]
                return total - np.repeat(base, np.diff(np.append(starts, rows)))
        raise ValueError(f"unknown coding {coding!r}")

    def verify(self, crc32: int | None) -> None:
        """After the last block: the crc32 of every byte against the one recorded."""
        if self.next_block != len(self.blocks):
            raise Damaged("not read to the end")
        crc = zlib.crc32(self._footer_bytes, self._crc)
        if crc32 is not None and crc != crc32:
            raise Damaged("checksum mismatch (truncated or altered on disk)")


@kernels.kernel
def _delta_kernel(column: np.ndarray, coding: int, same: np.ndarray,
                  out: np.ndarray) -> tuple[np.uint64, bool]:
    """``out``: the column coded (0 as it is, 1 ``d``, 2 ``r``); returns the largest coded value
    and whether the coding applies (``r``: some run, and no decrease inside a run)."""
    top = np.uint64(0)
    runs = False
    for i in range(len(column)):
        value = column[i]
        if coding == 1:
            value = value - column[i - 1] if i else np.uint64(0)
        elif coding == 2 and i and same[i]:
            if value < column[i - 1]:
                return top, False
            runs = True
            value = value - column[i - 1]
        out[i] = value
        top = max(top, value)
    return top, coding != 2 or runs


@kernels.kernel
def _shuffle_kernel(values: np.ndarray, itemsize: int, out: np.ndarray) -> None:
    """Byte plane b of ``out`` holds byte b of every value; one plane per loop, so that each
    loop is a vectorisable shift and narrowing."""
    n = len(values)
    for b in range(itemsize):
        plane = out[b * n:(b + 1) * n]
        shift = np.uint64(8 * b)
        for i in range(n):
            plane[i] = np.uint8((values[i] >> shift) & np.uint64(0xFF))


@kernels.kernel
def _decode_kernel(data: np.ndarray, itemsize: int, coding: int, first: np.uint64,
                   same: np.ndarray, out: np.ndarray) -> None:
    """Unshuffle, then undo the coding (0 ``z``, 1 ``d``, 2 ``r``). Two loops, not one: the
    unshuffle of a fixed width over whole byte planes vectorises, the sums cannot."""
    rows = len(out)
    if itemsize == 2:
        p0, p1 = data[:rows], data[rows:2 * rows]
        for i in range(rows):
            out[i] = np.uint64(p0[i]) | (np.uint64(p1[i]) << np.uint64(8))
    elif itemsize == 4:
        p0, p1, p2, p3 = data[:rows], data[rows:2 * rows], data[2 * rows:3 * rows], data[3 * rows:]
        for i in range(rows):
            out[i] = (np.uint64(p0[i]) | (np.uint64(p1[i]) << np.uint64(8))
                      | (np.uint64(p2[i]) << np.uint64(16)) | (np.uint64(p3[i]) << np.uint64(24)))
    else:  # 8: the only unsigned width left
        for i in range(rows):
            value = np.uint64(0)
            for b in range(8):  # a constant trip count: unrolled
                value |= np.uint64(data[b * rows + i]) << np.uint64(8 * b)
            out[i] = value
    if coding == 1:
        previous = first
        for i in range(rows):
            previous += out[i]          # wraps like numpy's uint64 cumsum
            out[i] = previous
    elif coding == 2:
        for i in range(1, rows):
            if same[i]:
                out[i] += out[i - 1]


def open_reader(path: str) -> tuple[BinaryIO, TableReader]:
    f = open(path, "rb")
    try:
        return f, TableReader(f, path, os.fstat(f.fileno()).st_size)
    except BaseException:
        f.close()
        raise


def read_whole(reader: TableReader) -> dict[str, np.ndarray]:
    """Every block of a table, concatenated (columns in the types the footer names)."""
    parts = [reader.read_block() for _ in range(len(reader.blocks))]
    if not parts:
        return {n: np.zeros(0, dtype=reader.dtypes[n]) for n in reader.names}
    if len(parts) == 1:
        return parts[0]
    return {n: np.concatenate([p[n] for p in parts]) for n in reader.names}
