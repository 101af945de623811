"""The benchmark's correctness check: our top-50 files must be byte-identical to DuckDB's.

At a tiny scale (3000 lines a day, one run per case) the whole ``mapreduce bench`` runs: it exits
non-zero, failing the test, as soon as one of our outputs differs from DuckDB's. The other tests
make sure that check cannot pass vacuously and that the SQL follows the validity rule on the
corner cases, compared with the plain-Python oracle.
"""
from __future__ import annotations

import datetime as dt
import os

import orjson
import pytest

pytest.importorskip("duckdb")

from jobs import bench_duckdb, bench_results, bench_runs  # noqa: E402
from jobs.bench_runs import WEEK_END  # noqa: E402
from jobs.generate import generate  # noqa: E402
from jobs.listens import ISO_CODES, parse_block  # noqa: E402
from jobs.top50 import Top50  # noqa: E402
from mapreduce.cli import main  # noqa: E402
from mapreduce.errors import JobError  # noqa: E402
from tests.oracle import reference_files  # noqa: E402


def test_bench_tiny_scale_outputs_identical_to_duckdb(tmp_path, capsys):
    data = tmp_path / "bench"
    rc = main(["bench", "--data", str(data), "--lines-per-day", "3000", "--runs", "1",
               "--workers", "2"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    result = orjson.loads((data / "bench.json").read_bytes())
    assert result["correctness"] == "all outputs byte-identical to DuckDB's"
    assert [c["case"] for c in result["cases"]] == ["cold", "warm", "daily-1w", "daily-2w",
                                                    "duckdb"]
    assert all(c["median_wall_s"] > 0 and c["peak_rss_mib"] > 0 for c in result["cases"])
    assert [t["target"] for t in result["targets"]] == [k for k, _, _ in bench_results.TARGETS]
    assert "byte-identical" in out.out and "targets:" in out.out
    assert not (data / "runs").exists()  # the runs' files are cleaned up after a pass


def test_bench_reuses_logs_of_the_same_size(tmp_path):
    first = bench_runs.ensure_logs(str(tmp_path), 500)
    stamp = os.stat(bench_runs.log_path(str(tmp_path), bench_runs.WEEK_END)).st_mtime_ns
    assert bench_runs.ensure_logs(str(tmp_path), 500) == first
    assert os.stat(bench_runs.log_path(str(tmp_path), bench_runs.WEEK_END)).st_mtime_ns == stamp
    with open(bench_runs.log_path(str(tmp_path), bench_runs.WEEK_END), "ab") as f:
        f.write(b"1|2|US\n")  # a size that no longer matches: generated again
    bench_runs.ensure_logs(str(tmp_path), 500)
    assert os.path.getsize(bench_runs.log_path(str(tmp_path), bench_runs.WEEK_END)) == \
        first["sizes"]["listen-20240107.log"]


def test_compare_outputs_fails_on_one_byte(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for d in (ours, theirs):
        d.mkdir()
        (d / "country.txt").write_bytes(b"FR|1:2\nUS|3:4,5:1\n")
        (d / "user.txt").write_bytes(b"7|1:1\n")
    files = {c: str(ours / f"{c}.txt") for c in ("country", "user")}
    ref = {c: str(theirs / f"{c}.txt") for c in ("country", "user")}
    bench_results.compare_outputs(files, ref, "same")  # no error
    (theirs / "country.txt").write_bytes(b"FR|1:2\nUS|3:4,5:2\n")
    with pytest.raises(JobError, match="line 2"):
        bench_results.compare_outputs(files, ref, "one byte")
    (theirs / "country.txt").write_bytes(b"FR|1:2\n")  # a missing last line
    with pytest.raises(JobError, match="end of file"):
        bench_results.compare_outputs(files, ref, "shorter")


#: every kind of corrupt line, and the valid corner cases (leading zeros, the largest id, a
#: "\r\n" ending, a last line without newline); text after a lone '\r' is left out: DuckDB's
#: CSV reader splits the line there (see jobs.bench_duckdb), a documented difference
EDGE_LOG = b"".join([
    b"1|2|US\n", b"\n", b"1 |2|US\n", b"1|2|US|1\n", b"1|2\n", b"+1|-2|US\n",
    "1|2|USé\n".encode(), b"1|2|\xff\xfe\n", b"1|2\x00|US\n", b"1|2|us\n", b"1|2|ZZ\n",
    b"1|2|\x80\n", b"1|2|US\x9f\n", b"1|2|\xed\xa0\x80\n", b"1|2|US\x01\n", b"1|2|US\x01X\n",
    b"00000000000000000001|2|US\n", b"9223372036854775808|2|US\n", b"1a|2|US\n", b"|2|US\n",
    b"1|2\r|US\n", b"1\t2\tUS\n", b"\"1|2|US\n", b"#1|2|US\n", b"1|2|U\"\n",
    b"9223372036854775807|9223372036854775807|FR\n", b"0000000000000000001|2|US\n",
    b"1|0000000000000000002|US\r\n", b"3|2|US\r\n", b"3|4|DE\n", b"5|4|DE\n", b"5|4|DE",
])


@pytest.mark.parametrize("reader", bench_duckdb.READERS)
def test_duckdb_sql_follows_the_rule_on_corner_cases(tmp_path, reader):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "listen-20240107.log").write_bytes(EDGE_LOG)
    (logs / "listen-20240106.log").write_bytes(b"3|4|DE\n1|2|US\n")
    paths = sorted(str(p) for p in logs.iterdir())
    country, user = tmp_path / "country.txt", tmp_path / "user.txt"
    bench_duckdb.run(paths, str(country), str(user), threads=2, codes=list(ISO_CODES), top=2,
                     reader=reader)
    want_country, want_user = reference_files(str(logs), dt.date(2024, 1, 7), 7, 2)
    assert country.read_text() == want_country
    assert user.read_text() == want_user


#: lines the generator does not write, of every sort the logs can hold: non-UTF-8 bytes of every
#: kind (C1 bytes 0x80-0x9F, which DuckDB's Latin-1 decoding refuses; stray continuation bytes, a
#: truncated sequence, an overlong form, a surrogate, beyond U+10FFFF, 0xFE/0xFF), NUL, DuckDB's
#: column delimiter 0x01 and its NULL string 0x02, quotes, '#', CRLF endings, the generator's own
#: lone '\r' (split by DuckDB into two corrupt pieces: the same verdict); and valid lines for a
#: song, user and country that are already in the data, so a wrong verdict shows in the output
HAND_LINES = [
    b"1|2|\x80", b"1|2|US\x9f", b"\x80\x81|2|US", b"1|\xc3|US", b"1|2|\xc0\xaf",
    b"1|2|\xed\xa0\x80", b"1|2|\xf4\x90\x80\x80", b"1|2|\xff\xfe", b"\xfe\xff1|2|US",
    "1|2|USé".encode(), "1|2|\u20ac".encode(), b"1|2\x00|US", b"\x00", b"1|2|US\x00",
    b"\x00\x00\x00",
    b"1|2|US\x01", b"\x011|2|US", b"1|2|US\x01\x01", b"\x02", b"1|2|\x02", b'"1|2|US', b'1|2|U"',
    b"#1|2|US", b"1|2\r|US", b"\r", b"", b"1|2|US ", b"\t",
]


def _logs_with_every_kind_of_line(folder, valid: bytes) -> list:
    """A week of generated logs (every corruption kind, realistic id widths), with the hand-made
    lines, each beside a copy of a valid line in CRLF and in LF, added to each day's log."""
    paths = generate(str(folder), days=7, lines_per_day=2000, end=WEEK_END, seed=11,
                     corrupt_share=0.2)
    for path in paths:
        with open(path, "ab") as f:
            for line in HAND_LINES:
                f.write(line + b"\n" + valid + b"\r\n" + valid + b"\n")
    return paths


def _top50_and_duckdb(tmp_path, logs, paths, reader: str) -> tuple[list, list]:
    out = tmp_path / f"out-{reader}"
    assert main(["top50", "--logs", str(logs), "--out", str(out), "--date", f"{WEEK_END:%Y%m%d}",
                 "--workers", "2", "--quiet"]) == 0
    names = Top50().output_names(WEEK_END)
    ours = [(out / names[c]).read_bytes() for c in ("country", "user")]
    duck = tmp_path / f"duckdb-{reader}"
    duck.mkdir()
    bench_duckdb.run(paths, str(duck / "country.txt"), str(duck / "user.txt"), threads=2,
                     codes=list(ISO_CODES), reader=reader)
    theirs = [(duck / f"{c}.txt").read_bytes() for c in ("country", "user")]
    return ours, theirs


def _a_valid_line(path) -> bytes:
    with open(path, "rb") as f:
        return next(line[:-1] for line in f if parse_block(line)["corrupt"] == 0)


def test_duckdb_reads_any_bytes_and_matches_top50_byte_for_byte(tmp_path):
    logs = tmp_path / "logs"
    paths = generate(str(logs), days=7, lines_per_day=2000, end=WEEK_END, seed=11,
                     corrupt_share=0.2)
    valid = _a_valid_line(paths[-1])
    for path in paths:
        os.unlink(path)
    paths = _logs_with_every_kind_of_line(logs, valid)
    with open(paths[-1], "ab") as f:
        f.write(valid)  # a last line without '\n'
    data = b"".join(open(p, "rb").read() for p in paths)
    assert b"\x80" in data and b"\xff\xfe" in data and b"\x00" in data and b"\r\n" in data
    assert max(len(s) for s in data.split(b"|")) > 10  # realistic widths: some ids over 10 digits
    assert bench_duckdb.csv_reader_limits(paths, list(ISO_CODES)) is None
    ours, theirs = _top50_and_duckdb(tmp_path, logs, paths, "csv")
    assert ours == theirs
    assert valid.split(b"|")[1] + b"|" in ours[1]  # the added valid lines are counted


def test_where_duckdbs_csv_reader_cannot_follow_the_rule_it_is_named_and_blob_reads_exactly(
        tmp_path):
    logs = tmp_path / "logs"
    paths = generate(str(logs), days=7, lines_per_day=2000, end=WEEK_END, seed=11,
                     corrupt_share=0.2, force=True)
    valid = _a_valid_line(paths[-1])
    song, user, country = valid.split(b"|")
    # text after a lone '\r' and a doubled '\r': corrupt for us, valid lines for DuckDB's CSV reader
    with open(paths[3], "rb") as f:
        lines = f.read().count(b"\n")
    with open(paths[3], "ab") as f:
        f.write(valid + b"\r" + valid + b"\n" + valid + b"\r\r\n")
    bom = paths[1]
    with open(bom, "rb") as f:
        data = f.read()
    with open(bom, "wb") as f:
        f.write(b"\xef\xbb\xbf" + data)  # its first line is corrupt for us
    limits = bench_duckdb.csv_reader_limits(paths, list(ISO_CODES))
    assert limits and "listen-20240102.log starts with a UTF-8 byte-order mark" in limits
    assert f"listen-20240104.log line {lines + 1} holds a '\\r'" in \
        bench_duckdb.csv_reader_limits(paths[2:], list(ISO_CODES))
    ours, theirs = _top50_and_duckdb(tmp_path, logs, paths, "csv")
    assert ours != theirs  # the limit is real: the csv reader counts lines we reject
    ours, theirs = _top50_and_duckdb(tmp_path, logs, paths, "blob")
    assert ours == theirs


def test_bench_times_each_job_and_compressed_days(tmp_path, capsys):
    data = tmp_path / "bench"
    rc = main(["bench", "--data", str(data), "--lines-per-day", "2000", "--runs", "1",
               "--workers", "2", "--jobs", "--compressed", "--only-extra", "--split-size", "64k"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    rows = {c["case"]: c for c in orjson.loads((data / "bench.json").read_bytes())["cases"]}
    assert {"job:top50", "job:distinct_listeners", "job:song_countries", "job:artist_countries",
            "day-plain", "day-gzip", "day-zstd"} <= set(rows)
    assert rows["job:top50"]["vs_top50"] == 1.0 and rows["job:song_countries"]["vs_top50"] > 0
    assert "(41 lines)" in rows["job:distinct_listeners"]["description"]
    assert rows["day-gzip"]["vs_plain"] > 0 and rows["day-zstd"]["vs_plain"] > 0
    assert (data / "compressed" / "gzip" / "listen-20240107.log.gz").exists()
    assert "the plain log's day" in out.out and "the top-50 job's" in out.out
