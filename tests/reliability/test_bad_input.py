"""Bad input against both commands: ``mapreduce top50`` and the engine's ``mapreduce run
jobs.song_plays:SongPlays``. Every case ends in the right files (compared with a direct
computation) or a one-line error and a non-zero exit; never a traceback, a temporary file left
behind, or a hang (each child runs under a timeout)."""
from __future__ import annotations

import datetime as dt
import os
import random
from typing import Callable

import pytest

from tests.conftest import DAY
from tests.oracle import reference_files
from tests.reliability.helpers import (assert_error, assert_ok, corrupt_count, no_temps,
                                       permission_bound_preexec, run_cli, song_plays_expected,
                                       summary, write_log)


def _valid_lines(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [f"{rng.randint(1, 40)}|{rng.randint(1, 15)}|{rng.choice(['FR', 'DE', 'GB'])}".encode()
            for _ in range(n)]


def _binary(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


# Each case: log bytes. Valid lines are mixed in where the bad input could hide them, so that a
# reader that gives up on the file (or skips too much) is caught, not only one that crashes.
CASES: dict[str, Callable[[], bytes]] = {
    "empty": lambda: b"",
    "only_corrupt_lines": lambda: b"\n".join([b"", b"a|b|c", b"1|2", b"1|2|UK", b"1|2|fr",
                                              b"+1|2|FR", b"1|2|FR|4", b"x" * 5000]) + b"\n",
    "random_binary": lambda: _binary(1, 300_000),
    "binary_between_valid_lines": lambda: b"\n".join(_valid_lines(500, 2)) + b"\n"
                                          + _binary(3, 50_000) + b"\n"
                                          + b"\n".join(_valid_lines(500, 4)) + b"\n",
    "nul_bytes": lambda: b"\0" * 70_000 + b"\n1|2|FR\n" + b"3\0|4|FR\n" + b"\0" * 10
                         + b"\n5|6|DE\n",
    "invalid_utf8": lambda: b"\n".join(_valid_lines(300, 5) + [
        b"\xff\xfe|1|FR", b"1|2|\xc3\x28", b"1\xc3|2|FR", b"\xed\xa0\x80|3|FR",  # surrogate
        b"\xc0\xaf|1|DE", b"1|1|F\x80"]) + b"\n",
    "utf16_with_bom": lambda: "\n".join(l.decode() for l in _valid_lines(200, 6)).encode(
        "utf-16"),
    "crlf_throughout": lambda: b"\r\n".join(_valid_lines(2000, 7)) + b"\r\n",
    "last_line_without_newline": lambda: b"\n".join(_valid_lines(2000, 8)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_log_both_commands(tmp_path, case):
    logs = tmp_path / "logs"
    logs.mkdir()
    path = write_log(logs, DAY, CASES[case]())
    # a small split size puts split boundaries inside the bad bytes too
    result = run_cli("top50", "--logs", str(logs), "--out", str(tmp_path / "out"),
                     "--workers", "2", "--reducers", "3", "--split-size", "64k")
    assert_ok(result)
    country, user = reference_files(str(logs), DAY, 7, 50)
    assert (tmp_path / "out" / "country_top50_20240107.txt").read_text() == country
    assert (tmp_path / "out" / "user_top50_20240107.txt").read_text() == user
    assert summary(tmp_path / "out")["corrupt_lines"][f"{DAY:%Y-%m-%d}"] == corrupt_count([path])

    plays = tmp_path / "plays"
    result = run_cli("run", "jobs.song_plays:SongPlays", path, "--out", str(plays),
                     "--workers", "2", "--reducers", "3", "--split-size", "64k")
    assert_ok(result)
    assert (plays / "song_plays.tsv").read_bytes() == song_plays_expected([path])
    no_temps(tmp_path)


def _not_a_file(kind: str, path: str) -> None:
    if kind == "directory":
        os.mkdir(path)
    elif kind == "broken_symlink":
        os.symlink(path + ".gone", path)
    elif kind == "fifo":  # a reader would block forever on it: must be refused before reading
        os.mkfifo(path)


@pytest.mark.parametrize("kind", ["directory", "broken_symlink", "fifo"])
def test_log_that_is_not_a_regular_file(tmp_path, kind):
    logs = tmp_path / "logs"
    logs.mkdir()
    write_log(logs, DAY - dt.timedelta(days=1), b"1|2|FR\n")
    path = str(logs / f"listen-{DAY:%Y%m%d}.log")
    _not_a_file(kind, path)
    # top50: the day exists by name, so skipping it would silently lose it: the run fails
    result = run_cli("top50", "--logs", str(logs), "--out", str(tmp_path / "out"),
                     "--workers", "1", timeout=60)
    assert_error(result, 1, f"cannot read log {path}: not a regular file")
    assert not (tmp_path / "out" / "country_top50_20240107.txt").exists()
    # run: inputs are named on the command line, so it is a usage error
    result = run_cli("run", "jobs.song_plays:SongPlays", path, "--out", str(tmp_path / "plays"),
                     timeout=60)
    assert_error(result, 2, f"input {path} does not exist or is not a regular file",
                 only_line=True)
    no_temps(tmp_path)


def test_unreadable_log(tmp_path):
    preexec = permission_bound_preexec()
    logs = tmp_path / "logs"
    logs.mkdir()
    path = write_log(logs, DAY, b"1|2|FR\n")
    os.chmod(path, 0)
    result = run_cli("top50", "--logs", str(logs), "--out", str(tmp_path / "out"), "--workers",
                     "1", preexec_fn=preexec, timeout=60)
    assert_error(result, 1, f"cannot read log {path}: permission denied")
    result = run_cli("run", "jobs.song_plays:SongPlays", path, "--out", str(tmp_path / "plays"),
                     preexec_fn=preexec, timeout=60)
    assert_error(result, 2, f"input {path} is not readable", only_line=True)
    # the same child, given a readable log, succeeds: the refusal above came from the mode
    os.chmod(path, 0o644)
    assert_ok(run_cli("top50", "--logs", str(logs), "--out", str(tmp_path / "out"), "--workers",
                      "1", preexec_fn=preexec, timeout=60))
    assert (tmp_path / "out" / "country_top50_20240107.txt").read_text() == "FR|1:1\n"


# ---- sizes: one enormous line, and ten million short ones ------------------------------------

@pytest.mark.slow
def test_single_line_of_100_megabytes(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    line = b"7" * (100 << 20)  # digits and pipes: the parser must look at it, not just skip it
    path = write_log(logs, DAY, b"1|2|FR\n" + line + b"|2|FR\n3|4|DE")
    del line
    result = run_cli("top50", "--logs", str(logs), "--out", str(tmp_path / "out"),
                     "--workers", "2", timeout=300)
    assert_ok(result)
    assert (tmp_path / "out" / "country_top50_20240107.txt").read_text() == "DE|3:1\nFR|1:1\n"
    info = summary(tmp_path / "out")
    assert info["corrupt_lines"] == {"2024-01-07": 1}
    # The line is held whole a few times over (block, padded copy, masks): a few hundred MB for
    # the whole process tree, never gigabytes.
    assert info["peak_rss_bytes"] < 1200 << 20, info["peak_rss_bytes"]

    plays = tmp_path / "plays"
    result = run_cli("run", "jobs.song_plays:SongPlays", path, "--out", str(plays),
                     "--workers", "2", timeout=300)
    assert_ok(result)
    # the 100 MB line is read whole, then refused by SongPlays' validity rule
    assert (plays / "song_plays.tsv").read_bytes() == b"1\t1\n3\t1\n"
    report = (plays / "song_plays.tsv.report.json").read_bytes()
    import orjson
    assert orjson.loads(report)["peak_rss_bytes"] < 1500 << 20
    no_temps(tmp_path)


@pytest.mark.slow
def test_ten_million_identical_lines(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    path = write_log(logs, DAY, b"123|456|FR\n" * 10_000_000)
    result = run_cli("top50", "--logs", str(logs), "--out", str(tmp_path / "out"),
                     "--workers", "2", timeout=300)
    assert_ok(result)
    assert (tmp_path / "out" / "country_top50_20240107.txt").read_text() == "FR|123:10000000\n"
    assert (tmp_path / "out" / "user_top50_20240107.txt").read_text() == "456|123:10000000\n"
    assert summary(tmp_path / "out")["input_lines_read"] == 10_000_000

    plays = tmp_path / "plays"
    result = run_cli("run", "jobs.song_plays:SongPlays", path, "--out", str(plays),
                     "--workers", "2", timeout=300)
    assert_ok(result)
    assert (plays / "song_plays.tsv").read_bytes() == b"123\t10000000\n"
    no_temps(tmp_path)
