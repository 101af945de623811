"""A daily reduction damaged on disk: a table truncated, a byte flipped, a table or the manifest
deleted, the manifest garbled. Each is detected (checksums of the tables and of the manifest
itself), reported with a warning, and that day is reduced again from its log: the outputs are
those of a clean run, never computed from damaged data."""
from __future__ import annotations

import datetime as dt
import os
import random

import orjson
import pytest

from jobs.generate import generate
from mapreduce.store import STORE_FORMAT, Store
from jobs.top50 import Top50
from mapreduce.windowed import run_window_job
from tests.conftest import DAY
from tests.oracle import reference_files
from tests.reliability.helpers import assert_ok, no_temps, run_cli

PARTITIONS = 4
DAYS = [DAY - dt.timedelta(days=i) for i in (2, 1, 0)]


@pytest.fixture
def week(tmp_path, inline_backend):
    logs, out = tmp_path / "logs", tmp_path / "out"
    generate(str(logs), days=3, lines_per_day=3000, end=DAY)
    clean = run_window_job(Top50(), str(logs), str(out), inline_backend, partitions=PARTITIONS)
    return logs, out, clean


def _day_dir(out, day: dt.date):
    return out / "store" / "daily" / f"day-{day:%Y%m%d}"


def _table(out, day: dt.date, name: str = "user-00001.tbl"):
    return _day_dir(out, day) / name


def _truncate(path) -> None:
    os.truncate(path, os.path.getsize(path) - 3)


def _flip(path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if at is None else at
    data[at] ^= 0x20
    path.write_bytes(bytes(data))


def _rerun_and_check(logs, out, backend, clean, damaged: list[dt.date], caplog,
                     says: str) -> None:
    again = run_window_job(Top50(), str(logs), str(out), backend, partitions=PARTITIONS)
    country, user = reference_files(str(logs), DAY, 7, 50)
    assert (out / "country_top50_20240107.txt").read_text() == country
    assert (out / "user_top50_20240107.txt").read_text() == user
    recomputed = sorted(d for d, info in again["days"].items() if not info["cached"])
    assert recomputed == [f"{d:%Y-%m-%d}" for d in damaged]
    assert again["corrupt_lines"] == clean["corrupt_lines"]
    for d in damaged:
        assert f"{d:%Y-%m-%d}" in caplog.text
    assert says in caplog.text
    store = Store(str(out / "store"), PARTITIONS, step="daily")
    for d in DAYS:  # what is stored now verifies
        assert store.manifest(d) is not None
    no_temps(out)


@pytest.mark.parametrize("damage", [_truncate, _flip], ids=["truncated", "flipped_byte"])
def test_damaged_table_is_recomputed(week, backend, caplog, damage):
    logs, out, clean = week
    damage(_table(out, DAYS[1]))
    _rerun_and_check(logs, out, backend, clean, [DAYS[1]], caplog, "checksum mismatch")


def test_tables_damaged_on_two_days_are_both_recomputed(week, backend, caplog):
    logs, out, clean = week
    _truncate(_table(out, DAYS[0], "country-00002.tbl"))
    _flip(_table(out, DAYS[2], "user-00003.tbl"))
    _rerun_and_check(logs, out, backend, clean, [DAYS[0], DAYS[2]], caplog, "checksum mismatch")


def test_deleted_table_is_recomputed(week, backend, caplog):
    logs, out, clean = week
    os.unlink(_table(out, DAYS[2]))
    _rerun_and_check(logs, out, backend, clean, [DAYS[2]], caplog, "missing")


def test_deleted_manifest_is_reported_and_recomputed(week, backend, caplog):
    logs, out, clean = week
    os.unlink(_day_dir(out, DAYS[0]) / "manifest.json")
    _rerun_and_check(logs, out, backend, clean, [DAYS[0]], caplog, "no usable manifest")


def _edit_manifest(path, edit) -> None:
    manifest = orjson.loads(path.read_bytes())
    edit(manifest)
    path.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))


GARBLINGS = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:-40]),
    "not_an_object": lambda p: p.write_bytes(b"[]"),
    "empty": lambda p: p.write_bytes(b""),
    # valid JSON, plausible values: only a checksum over the manifest itself can tell
    "corrupt_count_changed": lambda p: _edit_manifest(
        p, lambda m: m.__setitem__("corrupt_lines", m["corrupt_lines"] + 1)),
    "table_entry_renamed": lambda p: _edit_manifest(
        p, lambda m: m["files"].__setitem__("xuser-00001.tbl", m["files"].pop("user-00001.tbl"))),
    "table_entry_dropped": lambda p: _edit_manifest(
        p, lambda m: m["files"].pop("country-00000.tbl")),
}


@pytest.mark.parametrize("garble", list(GARBLINGS))
def test_garbled_manifest_is_reported_and_recomputed(week, backend, caplog, garble):
    logs, out, clean = week
    GARBLINGS[garble](_day_dir(out, DAYS[1]) / "manifest.json")
    _rerun_and_check(logs, out, backend, clean, [DAYS[1]], caplog, "no usable manifest")


@pytest.mark.parametrize("seed", range(6))
def test_manifest_with_one_flipped_byte_is_never_read(week, inline_backend, caplog, seed):
    logs, out, clean = week
    path = _day_dir(out, DAYS[2]) / "manifest.json"
    _flip(path, random.Random(seed).randrange(os.path.getsize(path)))
    _rerun_and_check(logs, out, inline_backend, clean, [DAYS[2]], caplog, "no usable manifest")


def test_garbled_store_config_still_gives_right_files(week, inline_backend):
    logs, out, clean = week
    (out / "store" / "store.json").write_bytes(b"[1, 2]")
    again = run_window_job(Top50(), str(logs), str(out), inline_backend, partitions=PARTITIONS)
    assert again["corrupt_lines"] == clean["corrupt_lines"]
    assert (out / "country_top50_20240107.txt").read_text() == reference_files(
        str(logs), DAY, 7, 50)[0]


def test_cli_garbled_manifest_and_table_no_traceback(week):
    """The same through the command line on the process pool: exit 0, right files, and the
    damage named in a warning, not a traceback."""
    logs, out, _ = week
    (_day_dir(out, DAYS[0]) / "manifest.json").write_bytes(
        orjson.dumps({"format": STORE_FORMAT, "files": 7}))
    _flip(_table(out, DAYS[2], "country-00001.tbl"), 20)
    result = run_cli("top50", "--logs", str(logs), "--out", str(out), "--workers", "2")
    assert_ok(result)
    assert "no usable manifest" in result.stderr and "checksum mismatch" in result.stderr
    country, user = reference_files(str(logs), DAY, 7, 50)
    assert (out / "country_top50_20240107.txt").read_text() == country
    assert (out / "user_top50_20240107.txt").read_text() == user
