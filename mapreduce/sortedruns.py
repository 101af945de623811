"""Several stored tables sorted by one key column, read together one key range at a time:
each row is read once, and what is held at a time is bounded by the range, not the tables.

    day 1  [ 3 3 5 | 8 9 12 | 12 14 ]      blocks of a compact table (first keys in its footer)
    day 2  [ 1 4 4 | 6 6 7  | 13 ]
              └── chunk (-, 6) ──┘└── chunk [6, 12) ──┘└── chunk [12, -) ──┘

The cut keys are planned from the footers alone (each block's first key and rows), so that a
chunk holds about ``budget`` rows over all tables; all rows of one key fall in one chunk
(a group is never split). A table is read block by block in file order, each block once and
verified before use; the whole file's crc32 is checked once it is read to its end. A table that
cannot be streamed (format 1, or not sorted by the key) is read whole and sorted: exact, but
its memory is the table's.

A *keyed* table (an old day re-coded against its block of days: :mod:`mapreduce.keying`) holds
the row number of each of its rows in the block's table (column ``@key``) instead of its key
columns; it is read together with that table, which all the keyed tables of one block share
and which is read once, as far as they need and no further back than the slowest of them::

    block's table  [ (3,a) (3,b) (5,a) (8,c) ... ]     one stream per block
    keyed day 1    [ @key 0 2 3 ... | count ... ]  ──▶ (3,a) (5,a) (8,c) ... with its counts
"""
from __future__ import annotations

import os
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np

from mapreduce import codec
from mapreduce.tablefile import BLOCK_ROWS, Damaged, TableReader, open_reader

Table = dict[str, np.ndarray]
#: a table to read: (path, crc32), or (path, crc32, block table's path, its crc32) when keyed
Input = tuple

#: the column of a keyed table that holds each row's row number in its block's table
KEY_COLUMN = "@key"

#: rows of all tables in one chunk, about (a chunk's combine holds a few times this in bytes)
DEFAULT_BUDGET = 2_000_000


class _Run:
    """One table: its unread blocks and the rows read but not yet handed out."""

    def __init__(self, path: str, crc32: int | None, key: str) -> None:
        self.path, self.crc32, self.key = path, crc32, key
        self.file: BinaryIO | None = None
        self.reader: TableReader | None = None
        self.pending: list[dict[str, np.ndarray]] = []
        try:
            self._open()
        except FileNotFoundError:
            raise codec.ChecksumError(f"{path}: missing (deleted from disk)") from None
        except Damaged as exc:
            raise _damage(path, exc) from None

    def _open(self) -> None:
        f = open(self.path, "rb")
        if f.read(8) != b"MRTABLE2":
            f.close()
        else:
            self.file = f
            try:
                reader = TableReader(f, self.path, os.fstat(f.fileno()).st_size)
            except BaseException:
                self.close()
                raise
            if (reader.sorted and reader.names[:1] == [self.key]
                    and reader.dtypes[self.key].kind == "u"):
                self.reader = reader
                return
            self.file.close()
            self.file = None
        table = codec.load_table(self.path, self.crc32)  # verified whole
        if self.key not in table:
            raise ValueError(f"{self.path}: no column {self.key!r} to read by")
        keys = table[self.key]
        if len(keys) > 1 and not bool(np.all(keys[1:] >= keys[:-1])):
            order = np.argsort(keys, kind="stable")
            table = {n: c[order] for n, c in table.items()}
        self.pending = [table]

    def marks(self) -> list[tuple[int, int]]:
        """(first key, rows) of each piece this run will hand out, for planning the cuts."""
        if self.reader is not None:
            return [(int(b.first), b.rows) for b in self.reader.blocks if b.rows]
        out = []
        for table in self.pending:
            keys = table[self.key]
            for at in range(0, len(keys), BLOCK_ROWS):
                out.append((int(keys[at]), min(BLOCK_ROWS, len(keys) - at)))
        return out

    def take(self, below: int | None) -> dict[str, np.ndarray] | None:
        """The rows whose key is below ``below`` (all that are left when None)."""
        reader = self.reader
        if reader is not None:
            try:
                while reader.next_block < len(reader.blocks) and (
                        below is None or reader.blocks[reader.next_block].first < below):
                    self.pending.append(reader.read_block())
                if below is None:
                    reader.verify(self.crc32)
            except Damaged as exc:
                raise _damage(self.path, exc) from None
        return self._cut(below)

    def _cut(self, below: int | None) -> dict[str, np.ndarray] | None:
        if not self.pending:
            return None
        table = (self.pending[0] if len(self.pending) == 1 else
                 {n: np.concatenate([p[n] for p in self.pending]) for n in self.pending[0]})
        keys = table[self.key]
        cut = len(keys) if below is None else int(np.searchsorted(
            keys, np.array(below, dtype=np.uint64), side="left"))
        # copied: a view would keep the whole table (a country's rows, handed out) alive
        # until this run's next turn, in every run of the window at once
        rest = {n: c[cut:].copy() for n, c in table.items()} if cut else table
        self.pending = [rest] if len(rest[self.key]) else []
        if cut == 0:
            return None
        return {n: c[:cut] for n, c in table.items()}

    def close(self) -> None:
        self.pending = []   # rows are let go of here, not when a cycle collection gets to them
        if self.file is not None:
            self.file.close()
            self.file = None


class _KeysStream:
    """A block's table read forward for the keyed tables that point into it: the rows from the
    lowest row number one of them still needs up to the highest asked for so far, in one
    growing buffer per key column (a keyed block of 16 K rows of one day spans tens of the
    block table's blocks: they are gathered from, never concatenated per request)."""

    def __init__(self, path: str, crc32: int | None) -> None:
        self.path, self.crc32 = path, crc32
        self.runs: list["_KeyedRun"] = []
        self.file: BinaryIO | None = None
        try:
            self.file, self.reader = open_reader(path)
        except FileNotFoundError:
            raise codec.ChecksumError(f"{path}: missing (deleted from disk)") from None
        except Damaged as exc:
            raise _damage(path, exc) from None
        if not (self.reader.rows and self.reader.sorted
                and self.reader.dtypes[self.reader.names[0]].kind == "u"):
            self.close()
            raise _damage(path, Damaged("not a block's table (empty, or not sorted by its key)"))
        self.starts = np.cumsum([0] + [b.rows for b in self.reader.blocks])
        self.names = list(self.reader.names)
        self.keys: list[str] = []              # the columns held (set by the first keyed run)
        self.buffer: dict[str, np.ndarray] = {}
        self.base = 0       # row number of the first row held
        self.at = 0         # where that row is in the buffer
        self.held = 0       # rows held

    def first_key_at(self, row: int) -> int:
        """The key (column 0) of the block holding row ``row``: at most the row's own key,
        which is all that planning by the footers needs."""
        i = int(np.searchsorted(self.starts, row, side="right")) - 1
        return int(self.reader.blocks[min(i, len(self.reader.blocks) - 1)].first)

    def gather(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The key columns of rows ``rows`` (increasing row numbers)."""
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        try:
            while self.base + self.held < hi:
                if self.reader.next_block == len(self.reader.blocks):
                    raise Damaged(f"row {hi - 1} asked of a table of {self.reader.rows} rows")
                self._append(self.reader.read_block())
                if self.reader.next_block == len(self.reader.blocks):
                    self.reader.verify(self.crc32)
        except Damaged as exc:
            raise _damage(self.path, exc) from None
        if lo < self.base:
            raise AssertionError(f"{self.path}: row {lo} already released")
        at = (rows - np.uint64(self.base)).astype(np.intp) + self.at
        return {n: self.buffer[n][at] for n in self.keys}

    def _append(self, block: dict[str, np.ndarray]) -> None:
        rows = len(block[self.names[0]])
        if not self.buffer:
            self.buffer = {n: np.empty(max(4 * rows, 1 << 16), dtype=block[n].dtype)
                           for n in self.keys}
        end = self.at + self.held
        capacity = len(next(iter(self.buffer.values())))
        if end + rows > capacity:  # move what is held to the front, and grow if still short
            size = max(capacity, 2 * (self.held + rows))
            for n in self.keys:
                grown = np.empty(size, dtype=self.buffer[n].dtype) if size > capacity \
                    else self.buffer[n]
                grown[:self.held] = self.buffer[n][self.at:end]
                self.buffer[n] = grown
            self.at, end = 0, self.held
        for n in self.keys:
            self.buffer[n][end:end + rows] = block[n]
        self.held += rows

    def release(self) -> None:
        """Forget the rows below every keyed table's next unread row."""
        below = min(run.next_row() for run in self.runs)
        drop = min(max(below - self.base, 0), self.held)
        self.base += drop
        self.at += drop
        self.held -= drop

    def close(self) -> None:
        # the stream and its keyed runs refer to each other: without this, the buffer (up to
        # a block table's rows of a country) stays until the cycle collector runs, which may
        # be during the worker's next task
        self.buffer, self.runs = {}, []
        if self.file is not None:
            self.file.close()
            self.file = None


class _KeyedRun(_Run):
    """A keyed table, its rows handed out with the key columns of its block's table."""

    def __init__(self, path: str, crc32: int | None, key: str, stream: _KeysStream) -> None:
        self.stream = stream
        super().__init__(path, crc32, key)
        stream.runs.append(self)

    def _open(self) -> None:
        self.file, reader = open_reader(self.path)
        if (reader.names[:1] != [KEY_COLUMN] or not reader.sorted
                or self.key != self.stream.names[0]):
            self.close()
            raise Damaged(f"not a table keyed by {self.stream.path}")
        self.reader = reader
        keys = [n for n in self.stream.names if n not in reader.names[1:]]
        if self.stream.keys and self.stream.keys != keys:
            self.close()
            raise Damaged(f"other value columns than another table keyed by {self.stream.path}")
        self.stream.keys = keys

    def next_row(self) -> int:
        reader = self.reader
        assert reader is not None
        if reader.next_block < len(reader.blocks):
            return int(reader.blocks[reader.next_block].first)
        return 1 << 62

    def marks(self) -> list[tuple[int, int]]:
        assert self.reader is not None
        return [(self.stream.first_key_at(int(b.first)), b.rows)
                for b in self.reader.blocks if b.rows]

    def take(self, below: int | None) -> dict[str, np.ndarray] | None:
        reader = self.reader
        assert reader is not None
        try:
            while reader.next_block < len(reader.blocks):
                if below is not None and self.pending:
                    last = self.pending[-1][self.key]
                    if len(last) and int(last[-1]) >= below:
                        break
                if below is not None and self.stream.first_key_at(
                        int(reader.blocks[reader.next_block].first)) >= below:
                    break
                block = reader.read_block()
                keys = self.stream.gather(block[KEY_COLUMN])
                decoded = {n: keys[n] if n in keys else block[n] for n in self.stream.names}
                self.pending.append(decoded)
                self.stream.release()
            if below is None:
                reader.verify(self.crc32)
        except Damaged as exc:
            raise _damage(self.path, exc) from None
        return self._cut(below)


def _damage(path: str, exc: Damaged) -> codec.ChecksumError:
    what = str(exc)
    if "checksum mismatch" not in what:
        what = f"checksum mismatch (truncated or altered on disk: {what})"
    return codec.ChecksumError(f"{path}: {what}")


def plan_cuts(marks: list[tuple[int, int]], budget: int) -> list[int]:
    """Increasing keys that cut the rows of all ``marks`` into chunks of about ``budget``."""
    return plan_chunks(marks, budget)[0]


def plan_chunks(marks: list[tuple[int, int]], budget: int) -> tuple[list[int], list[int]]:
    """The cut keys (:func:`plan_cuts`) and the rows each chunk is planned to hold (those of the
    pieces whose first key falls in it): one more count than cuts."""
    if not marks:
        return [], [0]
    keys = np.array([k for k, _ in marks], dtype=np.uint64)
    rows = np.array([n for _, n in marks], dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    keys, rows = keys[order], rows[order]
    before = np.cumsum(rows) - rows           # rows of the pieces that start before each
    cuts: list[int] = []
    last_at = 0
    for i in range(1, len(keys)):
        if before[i] - last_at >= budget and (not cuts or int(keys[i]) > cuts[-1]) \
                and int(keys[i]) > int(keys[0]):
            cuts.append(int(keys[i]))
            last_at = int(before[i])
    at = np.searchsorted(keys, np.array(cuts, dtype=np.uint64), side="left")
    return cuts, [int(r.sum()) for r in np.split(rows, at)]


class SortedRuns:
    """The tables ``inputs`` ((path, crc32) each) read together by ``key`` ranges."""

    def __init__(self, inputs: list[Input], key: str, budget: int = DEFAULT_BUDGET) -> None:
        self.key, self.budget = key, budget
        self.runs: list[_Run] = []
        self.streams: dict[str, _KeysStream] = {}
        _allow_open_files(len(inputs) + 64)
        try:
            for ref in inputs:
                if len(ref) == 2:
                    self.runs.append(_Run(ref[0], ref[1], key))
                    continue
                path, crc, keys_path, keys_crc = ref
                stream = self.streams.get(keys_path)
                if stream is None:
                    stream = self.streams[keys_path] = _KeysStream(keys_path, keys_crc)
                self.runs.append(_KeyedRun(path, crc, key, stream))
        except BaseException:
            self.close()
            raise

    def chunks(self) -> Iterator[list[dict[str, np.ndarray]]]:
        """Each chunk: every table's rows of one key range (tables with none left out), in key
        order; the last chunk reads every table to its end and verifies it."""
        for _, parts in self.chunk_parts():
            tables = list(parts)
            if tables:
                yield tables

    def chunk_parts(self) -> Iterator[tuple[int, Iterator[Table]]]:
        """As :meth:`chunk_runs`, the tables without the index of their input."""
        for expected, parts in self.chunk_runs():
            yield expected, (table for _, table in parts)

    def chunk_runs(self) -> Iterator[tuple[int, Iterator[tuple[int, Table]]]]:
        """As :meth:`chunks`, with the rows the plan expects in each chunk, and its tables read
        one at a time as they are asked for: a key range that one huge group fills (a
        country's songs over months, far above the budget) can then be held one table at a
        time by a caller that folds them (:func:`fold`). Each chunk's iterator must be used up
        before the next chunk is asked for."""
        cuts, planned = plan_chunks([m for run in self.runs for m in run.marks()], self.budget)
        for below, expected in zip([*cuts, None], planned):
            parts = self._take_all(below)
            yield expected, parts
            for _ in parts:  # what the caller left unread still belongs to this chunk
                pass

    def _take_all(self, below: int | None) -> Iterator[tuple[int, Table]]:
        for i, run in enumerate(self.runs):
            table = run.take(below)
            if table is not None:
                yield i, table

    def close(self) -> None:
        for run in self.runs:
            run.close()
        for stream in self.streams.values():
            stream.close()

    def __enter__(self) -> "SortedRuns":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def fold(parts: Iterable[Table], combine: Callable[[list[Table]], Table], budget: int,
         expected: int) -> Table | None:
    """``combine`` of all the parts of a chunk of ``expected`` rows, for a combine whose result
    may be combined again with more rows to the same end (a sum, a union, a min, a max).

    A chunk within twice the budget is one call of ``combine``. A larger one, a group that
    cannot be cut (a country's songs over months), is folded: parts are gathered until they
    hold ``budget`` rows or as many as the result so far, then combined with it, so that what
    is held is the result plus about as many rows again, not every part at once. None when
    there are no parts."""
    if expected <= 2 * budget:
        tables = list(parts)
        return combine(tables) if tables else None
    held: list[Table] = []     # the result so far (first, once there is one), then new parts
    result_rows = new_rows = 0
    for part in parts:
        held.append(part)
        new_rows += codec.table_rows(part)
        if new_rows >= max(budget, result_rows):
            held = [combine(held)]
            result_rows, new_rows = codec.table_rows(held[0]), 0
    if not held:
        return None
    return held[0] if new_rows == 0 else combine(held)


def _allow_open_files(count: int) -> None:
    """A long window holds one open file per day: lift the soft limit on open files (often
    1024) up to the hard one when that is needed."""
    try:
        import resource
    except ImportError:  # not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count:
        target = count if hard == resource.RLIM_INFINITY else min(count, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))

