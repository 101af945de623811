"""The benchmark's baseline: the top-50 week computed by DuckDB in one SQL pipeline.

    python -m jobs.bench_duckdb --threads W --codes AD,AE,... --country C.txt --user U.txt LOG...

``jobs.bench`` runs this in its own process, so the peak memory it samples is DuckDB's alone; for
the same reason it imports nothing but DuckDB and the standard library (the ISO codes come on the
command line rather than from ``jobs.listens``, which would load numpy into the measured process).

The SQL follows the validity rule of ``jobs.listens`` and writes our exact output format, so the
benchmark can require the two programs' files to be byte-identical before it reports any time.
"""
from __future__ import annotations

import argparse
import os
import sys

#: A line is read whole as one VARCHAR column. Why each option:
#: - delim chr(1): a byte the logs never hold, so a line with extra '|' stays one value;
#: - quote/escape '': a '"' in a corrupt line must not open a quoted field spanning lines;
#: - comment '': a '#' must not cut a line short;
#: - encoding latin-1: every byte sequence is valid Latin-1, so lines of invalid UTF-8 are read
#:   (and then fail the pattern) instead of aborting the scan; valid lines are ASCII either way;
#: - strict_mode false: lines with NUL bytes or a lone '\r' would otherwise stop the reader
#:   ("the CSV parser state machine reached an invalid state");
#: - auto_detect false, header false: nothing is sniffed; blank lines come back as NULL.
#: DuckDB's reader treats a lone '\r' as a line break (its docs: it does not tell '\r' from '\n'),
#: so a line "a|b\r|US" arrives as two invalid lines "a|b" and "|US": the same verdict as ours. The
#: rule cannot be expressed exactly for text after a '\r' ("1|2|US\rX" or "1|2|US\r\r" would count
#: here and not in our job); the generator writes no such line and the benchmark's byte-for-byte
#: comparison would catch one.
READ_OPTIONS = (
    "columns = {'line': 'VARCHAR'}, header = false, auto_detect = false, delim = chr(1), "
    "quote = '', escape = '', comment = '', new_line = '\\n', encoding = 'latin-1', "
    "strict_mode = false"
)

#: Valid: 1-19 digits | 1-19 digits | two capitals, then at most one '\r' (the rule strips one).
LINE_PATTERN = r"([0-9]{1,19})\|([0-9]{1,19})\|([A-Z]{2})\r?"


def top_sql(codes: list[str], top: int) -> str:
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
    FROM read_csv($logs, {READ_OPTIONS})
    WHERE regexp_full_match(line, '{LINE_PATTERN}')
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
        top: int = 50, temp_dir: str | None = None) -> None:
    """Write the country and user top files for ``logs`` (one window) with DuckDB."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"PRAGMA threads={int(threads)}")
    # An in-memory database spills to ./.tmp by default: keep spills beside the outputs instead.
    spill = temp_dir or os.path.join(os.path.dirname(os.path.abspath(country_path)), ".duckdb-tmp")
    con.execute(f"SET temp_directory = '{spill.replace(chr(39), chr(39) * 2)}'")
    con.execute(top_sql(codes, top), {"logs": logs})
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
    args = p.parse_args(argv)
    run(args.logs, args.country, args.user, threads=args.threads, codes=args.codes.split(","),
        top=args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
