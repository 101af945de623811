"""The benchmark's baseline: the top-50 week computed by DuckDB in one SQL pipeline.

    python -m jobs.bench_duckdb --threads W --codes AD,AE,... --country C.txt --user U.txt LOG...

``jobs.bench`` runs this in its own process, so the peak memory it samples is DuckDB's alone; for
the same reason it imports nothing but DuckDB and the standard library (the ISO codes come on the
command line rather than from ``jobs.listens``, which would load numpy into the measured process).

The SQL follows the validity rule of ``jobs.listens`` and writes our exact output format, so the
benchmark can require the two programs' files to be byte-identical before it reports any time.
Logs may hold any bytes. The default reader (DuckDB's CSV scan) follows the rule on all of them but
two cases, a lone '\r' and a leading byte-order mark, which ``csv_reader_limits`` finds and names;
on such logs ``--reader blob`` is exact, at a cost in time and memory.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from typing import Any

#: The fast reader (``--reader csv``): DuckDB's CSV scan, each line whole in column ``line``.
#: Why each option:
#: - encoding utf-8 (the default) and ignore_errors: a line that is not valid UTF-8 is dropped
#:   (a valid line is ASCII, so it was corrupt anyway) instead of aborting the scan; Latin-1
#:   would read more, but DuckDB refuses the bytes 0x80-0x9F in it ("File is not latin-1
#:   encoded"), and those are in UTF-8 continuation bytes;
#: - delim chr(1), columns line and rest, null_padding, nullstr chr(2): a line without the
#:   byte 0x01 has a NULL ``rest``; one with it (corrupt) has a non-NULL ``rest`` (an empty
#:   value stays '' as nothing reads as NULL but chr(2)), since with strict_mode off DuckDB
#:   silently drops columns beyond the declared ones;
#: - quote/escape '': a '"' in a corrupt line must not open a quoted field spanning lines;
#: - comment '': a '#' must not cut a line short;
#: - strict_mode false: lines with NUL bytes or a lone '\r' would otherwise stop the reader
#:   ("the CSV parser state machine reached an invalid state"), and ignore_errors cannot skip that;
#: - auto_detect false, header false: nothing is sniffed; blank lines are dropped.
#: Two things the rule says cannot be said to this reader (``csv_reader_limits`` finds the lines
#: where they change a verdict): it ends a line at a lone '\r' as at '\n' (its docs: it does not
#: tell them apart), so "1|2|US\rX" or "1|2|US\r\r" would count here and not in our job; and it
#: skips a UTF-8 byte-order mark at the start of a file, so a first line "\ufeff1|2|US" would
#: count too. A "1|2\r|US" (the generator's lone_cr) splits into two corrupt pieces: the same
#: verdict, so generated logs are read exactly.
CSV_OPTIONS = (
    "columns = {'line': 'VARCHAR', 'rest': 'VARCHAR'}, header = false, auto_detect = false, "
    "delim = chr(1), quote = '', escape = '', comment = '', new_line = '\\n', "
    "strict_mode = false, ignore_errors = true, null_padding = true, nullstr = chr(2)"
)

#: Valid: 1-19 digits | 1-19 digits | two capitals, then at most one '\r' (the rule strips one).
LINE_PATTERN = r"([0-9]{1,19})\|([0-9]{1,19})\|([A-Z]{2})\r?"

#: The exact reader (``--reader blob``): each file whole as a BLOB, cast to VARCHAR, which DuckDB
#: writes with every byte that is not printable ASCII, and '\' and '"', as the four characters
#: \xNN, so any bytes at all become text; that text, with the escaped '\n' turned back into line
#: breaks, is copied to a temporary file that the CSV reader then reads exactly (it holds no
#: '\r', NUL or invalid byte any more). Unnesting a split of the whole text would be the direct
#: way, but DuckDB takes minutes to unnest a list of millions. The copy costs a file's size on
#: disk and a file at a time in memory per thread.
BLOB_LINE_PATTERN = r"([0-9]{1,19})\|([0-9]{1,19})\|([A-Z]{2})(\\x0D)?"
ESCAPED_OPTIONS = (
    "columns = {'line': 'VARCHAR'}, header = false, auto_detect = false, delim = chr(1), "
    "quote = '', escape = '', comment = '', new_line = '\\n'"
)

READERS = ("csv", "blob")


def _lines_sql(reader: str) -> str:
    """A query giving the valid-looking lines (pattern matched, not yet range-checked) as
    ``line``, the country's two letters starting its third field; ``$logs`` are the logs for
    the csv reader, the escaped copy (``escape_logs``) for the blob reader."""
    if reader == "csv":
        return (f"SELECT line FROM read_csv($logs, {CSV_OPTIONS}) "
                f"WHERE rest IS NULL AND regexp_full_match(line, '{LINE_PATTERN}')")
    if reader == "blob":
        return (f"SELECT line FROM read_csv($logs, {ESCAPED_OPTIONS}) "
                f"WHERE regexp_full_match(line, '{BLOB_LINE_PATTERN}')")
    raise ValueError(f"reader must be one of {', '.join(READERS)}, not {reader!r}")


def escape_logs(con: Any, logs: list[str], path: str) -> None:
    """Write the escaped text of ``logs`` to ``path``, one log line per line (the blob reader)."""
    quoted = path.replace("'", "''")
    con.execute("COPY (SELECT replace(content::VARCHAR, '\\x0A', chr(10)) FROM read_blob($logs)) "
                f"TO '{quoted}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER chr(1))",
                {"logs": logs})


_LONE_CR = re.compile(rb"\r(?!\n)")
_VALID = re.compile(rb"([0-9]{1,19})\|([0-9]{1,19})\|([A-Z]{2})")
_BOM = b"\xef\xbb\xbf"


def _any_piece_counts(line: bytes, codes: set[bytes]) -> bool:
    """Whether a piece of ``line`` cut at every '\r' (as DuckDB's CSV reader cuts it) is a
    valid line by itself."""
    for piece in line.split(b"\r"):
        m = _VALID.fullmatch(piece)
        if m and int(m[1]) < 2**63 and int(m[2]) < 2**63 and m[3] in codes:
            return True
    return False


def csv_reader_limits(paths: list[str], codes: list[str],
                      chunk_size: int = 1 << 24) -> str | None:
    """The first line in ``paths`` that DuckDB's CSV reader would count and our rule rejects,
    described in one line; None when there is none: a line holding a '\\r' not followed by
    '\\n' (the reader ends a line there) with a valid piece, or a first line with a UTF-8
    byte-order mark (the reader skips it) that is valid without it. A plain scan, meant to run
    once, outside any timing."""
    valid_codes = {c.encode() for c in codes}
    for path in paths:
        name = os.path.basename(path)
        lines_before, carry, first = 0, b"", True
        with open(path, "rb") as f:
            while True:
                chunk = f.read(chunk_size)
                data = carry + chunk
                if chunk:  # whole lines only; a partial last line waits for the next chunk
                    cut = data.rfind(b"\n") + 1
                    if not cut:
                        carry = data
                        continue
                    data, carry = data[:cut], data[cut:]
                if first:
                    first = False
                    line = data.split(b"\n", 1)[0]
                    if line.startswith(_BOM) and _any_piece_counts(line[3:], valid_codes):
                        return (f"{name} starts with a UTF-8 byte-order mark, which DuckDB's CSV "
                                "reader skips: its first line would count there and not in ours")
                for m in _LONE_CR.finditer(data):
                    i = m.start()
                    if not chunk and i == len(data) - 1:
                        continue  # the file's last byte: the rule removes it, and DuckDB too
                    start = data.rfind(b"\n", 0, i) + 1
                    stop = data.find(b"\n", i)
                    line = data[start:stop if stop >= 0 else len(data)]
                    if _any_piece_counts(line, valid_codes):
                        number = lines_before + data.count(b"\n", 0, start) + 1
                        return (f"{name} line {number} holds a '\\r' not followed by '\\n', where "
                                "DuckDB's CSV reader ends a line (it does not tell '\\r' from "
                                "'\\n'), and a piece of it would count there and not in ours")
                lines_before += data.count(b"\n")
                if not chunk:
                    break
    return None


def top_sql(codes: list[str], top: int, reader: str = "csv") -> str:
    """The query creating temp table ``top_lines(country, usr, line)``: one output line per
    country (usr NULL) and per user (country NULL)."""
    iso = ", ".join(f"('{c}')" for c in codes)
    # TRY_CAST to BIGINT is NULL above 9223372036854775807: that is the 19-digit overflow check.
    # GROUPING SETS count both channels in one scan of the logs (measured faster than two
    # separate pipelines); valid rows never have a NULL country or user, so the NULL of the other
    # set's key tells the two channels apart.
    return f"""
CREATE TEMP TABLE top_lines AS
WITH iso(code) AS (VALUES {iso}),
parsed AS (
    SELECT TRY_CAST(split_part(line, '|', 1) AS BIGINT) AS song,
           TRY_CAST(split_part(line, '|', 2) AS BIGINT) AS usr,
           left(split_part(line, '|', 3), 2) AS country
    FROM ({_lines_sql(reader)})
),
valid AS (
    SELECT * FROM parsed
    WHERE song IS NOT NULL AND usr IS NOT NULL AND country IN (SELECT code FROM iso)
),
counts AS (
    SELECT country, usr, song, count(*) AS n
    FROM valid
    GROUP BY GROUPING SETS ((country, song), (usr, song))
),
ranked AS (
    SELECT *, row_number() OVER (PARTITION BY country, usr ORDER BY n DESC, song ASC) AS r
    FROM counts
)
SELECT country, usr,
       coalesce(country, usr::VARCHAR) || '|'
       || string_agg(song::VARCHAR || ':' || n::VARCHAR, ',' ORDER BY n DESC, song ASC) AS line
FROM ranked
WHERE r <= {int(top)}
GROUP BY country, usr
"""


def _copy_sql(where: str, order: str, path: str) -> str:
    # One VARCHAR column, no quoting, delimiter never present: each row is written as its text
    # plus '\n', which is our format (a final newline included).
    quoted = path.replace("'", "''")
    return (f"COPY (SELECT line FROM top_lines WHERE {where} ORDER BY {order}) TO '{quoted}' "
            "(FORMAT csv, HEADER false, QUOTE '', DELIMITER chr(1))")


def run(logs: list[str], country_path: str, user_path: str, *, threads: int, codes: list[str],
        top: int = 50, temp_dir: str | None = None, reader: str = "csv") -> None:
    """Write the country and user top files for ``logs`` (one window) with DuckDB, reading the
    logs with ``reader`` (see READERS)."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"PRAGMA threads={int(threads)}")
    # An in-memory database spills to ./.tmp by default: keep spills beside the outputs instead.
    spill = temp_dir or os.path.join(os.path.dirname(os.path.abspath(country_path)), ".duckdb-tmp")
    con.execute(f"SET temp_directory = '{spill.replace(chr(39), chr(39) * 2)}'")
    if reader == "blob":
        os.makedirs(spill, exist_ok=True)
        escaped = os.path.join(spill, f"escaped-{os.getpid()}.txt")
        try:
            escape_logs(con, logs, escaped)
            con.execute(top_sql(codes, top, reader), {"logs": [escaped]})
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(escaped)
    else:
        con.execute(top_sql(codes, top, reader), {"logs": logs})
    con.execute(_copy_sql("usr IS NULL", "country", country_path))  # codes sort as the ISO list
    con.execute(_copy_sql("country IS NULL", "usr", user_path))     # users by integer value
    con.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobs.bench_duckdb",
                                description="The top-K window in DuckDB (the benchmark baseline).")
    p.add_argument("logs", nargs="+", help="the window's log files")
    p.add_argument("--country", required=True, help="country output file")
    p.add_argument("--user", required=True, help="user output file")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--codes", required=True, help="the ISO codes, comma-separated")
    p.add_argument("--top", type=int, default=50)
    p.add_argument("--reader", choices=READERS, default="csv",
                   help="csv (default): DuckDB's CSV scan, fast, exact but for a lone '\r' or a "
                   "leading byte-order mark; blob: each file as one BLOB, exact on any bytes")
    args = p.parse_args(argv)
    run(args.logs, args.country, args.user, threads=args.threads, codes=args.codes.split(","),
        top=args.top, reader=args.reader)
    return 0


if __name__ == "__main__":
    sys.exit(main())
