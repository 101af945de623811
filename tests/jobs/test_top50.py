from __future__ import annotations

import datetime as dt
import os

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from jobs.generate import generate
from jobs.top50 import Top50, TopSongs
from mapreduce.windowed import run_window_job
from jobs.yearly_top10 import YearlyTop10
from mapreduce.cli import main
from tests.conftest import DAY, temp_names
from tests.oracle import reference_files

CORRUPT = [b"", b"   ", b"1|2", b"1|2|FR|3", b"+1|2|FR", b"1|-2|FR", "1|2|FR\u00e9".encode(),
           b"1|2|\xc3\x28", b"1\x00|2|FR", b"1|2|fr", b"1|2|UK", b"1|2|ZZ",
           b"12345678901234567890|1|FR", b"9223372036854775808|1|FR", b"1\r|2|FR", b"1\t2\tFR",
           b"|2|FR", b"1|2|F R"]


def _write_log(folder, day: dt.date, lines: list[bytes], ending=b"\n", final=True) -> None:
    data = ending.join(lines) + (ending if final else b"")
    with open(os.path.join(folder, f"listen-{day:%Y%m%d}.log"), "wb") as f:
        f.write(data)


def _hand_written_week(folder) -> None:
    """Day i has songs i*100+1 .. i*100+50 twice each (FR, user 1) and song 7 once: 7 is 51st
    every day, yet first over the week with 7 listens, while the 350 songs at 2 listens tie at
    the cut, which keeps the lowest ids."""
    for i in range(1, 8):
        day = DAY - dt.timedelta(days=7 - i)
        lines = [f"{i * 100 + j}|1|FR".encode() for j in range(1, 51) for _ in range(2)]
        lines.append(b"7|1|FR" if i % 2 else b"0000007|0001|FR")  # leading zeros: same ids
        if i == 1:
            lines += CORRUPT
        if i == 3:
            lines += [b"1000|5|DE", b"999|5|DE", b"99|5|DE",
                      b"9223372036854775807|3|GB", b"5|10|GB", b"5|9|GB"]
        _write_log(folder, day, lines, ending=b"\r\n" if i == 2 else b"\n", final=i != 7)


EXPECTED_COUNTRY = (
    "DE|99:1,999:1,1000:1\n"
    "FR|7:7," + ",".join(f"{s}:2" for s in range(101, 150)) + "\n"
    "GB|5:2,9223372036854775807:1\n"
)
EXPECTED_USER = (
    "1|7:7," + ",".join(f"{s}:2" for s in range(101, 150)) + "\n"
    "3|9223372036854775807:1\n"
    "5|99:1,999:1,1000:1\n"
    "9|5:1\n"
    "10|5:1\n"
)


@pytest.mark.parametrize("split_size", [1 << 20, 333])
def test_hand_written_week(tmp_path, backend, split_size):
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    _hand_written_week(logs)
    summary = run_window_job(Top50(), str(logs), str(out), backend, split_size=split_size,
                             partitions=5)
    assert (out / "country_top50_20240107.txt").read_text() == EXPECTED_COUNTRY
    assert (out / "user_top50_20240107.txt").read_text() == EXPECTED_USER
    assert summary["corrupt_lines"] == {"2024-01-01": len(CORRUPT), **{
        f"2024-01-0{i}": 0 for i in range(2, 8)}}
    assert summary["days_missing"] == [] and len(summary["days_used"]) == 7
    on_disk = orjson.loads((out / "top50_20240107.summary.json").read_bytes())
    assert on_disk["window"] == {"first": "2024-01-01", "last": "2024-01-07", "days": 7}
    manifest = orjson.loads((out / "store" / "daily" / "day-20240101" / "manifest.json").read_bytes())
    assert [s["line"] for s in manifest["corrupt_samples"]][:3] == ["", "   ", "1|2"]
    assert temp_names(str(tmp_path)) == []


day_lines = st.lists(st.one_of(
    st.builds(lambda s, u, c: f"{s}|{u}|{c}".encode(), st.integers(1, 12), st.integers(1, 6),
              st.sampled_from(["FR", "DE", "US"])),
    st.sampled_from(CORRUPT)), max_size=40)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(week=st.lists(st.one_of(st.none(), day_lines), min_size=7, max_size=7),
       top=st.integers(1, 4), partitions=st.integers(1, 6), split_size=st.sampled_from([7, 64, 4096]))
def test_random_weeks_match_direct_computation(tmp_path_factory, backend, week, top, partitions,
                                               split_size):
    week[-1] = week[-1] or []  # the window's last day is present
    root = tmp_path_factory.mktemp("week")
    logs, out = root / "logs", root / "out"
    logs.mkdir()
    for i, lines in enumerate(week):
        if lines is not None:
            _write_log(logs, DAY - dt.timedelta(days=6 - i), lines)
    run_window_job(TopSongs(days=7, top=top), str(logs), str(out), backend, partitions=partitions,
                   split_size=split_size)
    country, user = reference_files(str(logs), DAY, 7, top)
    assert (out / f"country_top{top}_20240107.txt").read_text() == country
    assert (out / f"user_top{top}_20240107.txt").read_text() == user


def test_generated_week_matches_and_second_run_reads_nothing(tmp_path, backend):
    logs, out = tmp_path / "logs", tmp_path / "out"
    generate(str(logs), days=7, lines_per_day=4000, end=DAY)
    first = run_window_job(Top50(), str(logs), str(out), backend, partitions=8, split_size=20_000)
    assert first["input_lines_read"] == 7 * 4000
    files = {n: (out / n).read_bytes() for n in ("country_top50_20240107.txt",
                                                 "user_top50_20240107.txt")}
    country, user = reference_files(str(logs), DAY, 7, 50)
    assert files["country_top50_20240107.txt"].decode() == country
    assert files["user_top50_20240107.txt"].decode() == user

    second = run_window_job(Top50(), str(logs), str(out), backend, partitions=8)
    assert second["input_lines_read"] == 0
    assert all(d["cached"] for d in second["days"].values())
    assert {n: (out / n).read_bytes() for n in files} == files

    changed = logs / "listen-20240104.log"
    with open(changed, "ab") as f:
        f.write(b"1|1|FR\n")
    third = run_window_job(Top50(), str(logs), str(out), backend, partitions=8)
    assert [d for d, info in third["days"].items() if not info["cached"]] == ["2024-01-04"]
    assert third["input_lines_read"] == 4001
    assert (out / "country_top50_20240107.txt").read_text() == reference_files(
        str(logs), DAY, 7, 50)[0]


def test_yearly_top10_on_a_generated_year(tmp_path, backend):
    logs, out = tmp_path / "logs", tmp_path / "out"
    generate(str(logs), days=365, lines_per_day=60, end=DAY, users=40, songs=30)
    summary = run_window_job(YearlyTop10(), str(logs), str(out), backend, partitions=2)
    assert len(summary["days_used"]) == 365
    country, user = reference_files(str(logs), DAY, 365, 10)
    assert (out / "country_top10_365days_20240107.txt").read_text() == country
    assert (out / "user_top10_365days_20240107.txt").read_text() == user


# ---- the command line: dates, missing days, strictness --------------------------------------

def _cli(*args: str) -> int:
    return main([*args, "--executor", "inline", "--quiet"])


def test_missing_days_warn_and_are_listed(tmp_path, caplog):
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    for day in (DAY, DAY - dt.timedelta(days=3)):
        _write_log(logs, day, [b"1|1|FR"])
    assert _cli("top50", "--logs", str(logs), "--out", str(out)) == 0
    summary = orjson.loads((out / "top50_20240107.summary.json").read_bytes())
    assert summary["days_missing"] == ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-05",
                                       "2024-01-06"]
    assert "5 day(s) missing" in caplog.text


def test_strict_fails_and_writes_nothing(tmp_path, capsys):
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    _write_log(logs, DAY, [b"1|1|FR"])
    assert _cli("top50", "--logs", str(logs), "--out", str(out), "--strict") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --strict: 6 day(s) missing from the window: 2024-01-01")
    assert not any(n.endswith(".txt") for n in os.listdir(out))


def test_bad_date_and_empty_folder(tmp_path, capsys):
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    assert _cli("top50", "--logs", str(logs), "--out", str(out), "--date", "20231345") == 2
    assert capsys.readouterr().err.strip() == (
        "error: --date '20231345' is not a real date as YYYYMMDD or YYYY-MM-DD")
    assert _cli("top50", "--logs", str(logs), "--out", str(out)) == 1
    assert capsys.readouterr().err.strip() == f"error: no listen-YYYYMMDD.log file in {logs}"
    _write_log(logs, DAY, [b"1|1|FR"])
    assert _cli("top50", "--logs", str(logs), "--out", str(out), "--date", "2023-06-01") == 1
    assert "no log in the window 2023-05-26 .. 2023-06-01" in capsys.readouterr().err


def test_other_names_are_ignored_with_a_warning(tmp_path, caplog):
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    _write_log(logs, DAY, [b"1|1|FR"])
    (logs / "listen-20231345.log").write_bytes(b"1|1|FR\n")
    (logs / "notes.txt").write_text("hi")
    (logs / "sub").mkdir()
    assert _cli("top50", "--logs", str(logs), "--out", str(out), "--date", "2024-01-07") == 0
    err = caplog.text
    for name in ("listen-20231345.log", "notes.txt", "sub"):
        assert err.count(f"ignoring {logs / name}") == 1
    assert (out / "country_top50_20240107.txt").read_text() == "FR|1:1\n"


def test_partitions_too_large_for_one_task_are_sliced(tmp_path, backend, monkeypatch):
    import mapreduce.windowed

    monkeypatch.setattr(mapreduce.windowed, "MAX_WINDOW_ROWS", 300)
    logs, out = tmp_path / "logs", tmp_path / "out"
    generate(str(logs), days=3, lines_per_day=3000, end=DAY)
    run_window_job(Top50(), str(logs), str(out), backend, partitions=2)
    country, user = reference_files(str(logs), DAY, 7, 50)
    assert (out / "country_top50_20240107.txt").read_text() == country
    assert (out / "user_top50_20240107.txt").read_text() == user
