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
from jobs.listens import ISO_CODES  # noqa: E402
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
#: reader splits the line there (see jobs.bench_duckdb), a documented difference
EDGE_LOG = b"".join([
    b"1|2|US\n", b"\n", b"1 |2|US\n", b"1|2|US|1\n", b"1|2\n", b"+1|-2|US\n",
    "1|2|USé\n".encode(), b"1|2|\xff\xfe\n", b"1|2\x00|US\n", b"1|2|us\n", b"1|2|ZZ\n",
    b"00000000000000000001|2|US\n", b"9223372036854775808|2|US\n", b"1a|2|US\n", b"|2|US\n",
    b"1|2\r|US\n", b"1\t2\tUS\n", b"\"1|2|US\n", b"#1|2|US\n", b"1|2|U\"\n",
    b"9223372036854775807|9223372036854775807|FR\n", b"0000000000000000001|2|US\n",
    b"1|0000000000000000002|US\r\n", b"3|2|US\r\n", b"3|4|DE\n", b"5|4|DE\n", b"5|4|DE",
])


def test_duckdb_sql_follows_the_rule_on_corner_cases(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "listen-20240107.log").write_bytes(EDGE_LOG)
    (logs / "listen-20240106.log").write_bytes(b"3|4|DE\n1|2|US\n")
    paths = sorted(str(p) for p in logs.iterdir())
    country, user = tmp_path / "country.txt", tmp_path / "user.txt"
    bench_duckdb.run(paths, str(country), str(user), threads=2, codes=list(ISO_CODES), top=2)
    want_country, want_user = reference_files(str(logs), dt.date(2024, 1, 7), 7, 2)
    assert country.read_text() == want_country
    assert user.read_text() == want_user
