"""Compressed logs (.gz, .zst) read by top50, top, run and watch give the plain logs' files.

Each test generates a week, keeps a plain copy for the oracle and compresses days of another
copy with the real gzip/zstd formats (several members / frames too), then runs the real command
line in a subprocess.
"""
from __future__ import annotations

import datetime as dt
import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard

from jobs.generate import generate
from tests.oracle import reference_files

ROOT = Path(__file__).resolve().parents[2]
END = dt.date(2024, 1, 7)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "mapreduce.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def compress(path: Path, kind: str, pieces: int = 1) -> Path:
    """``path`` replaced by ``path.gz`` / ``path.zst`` made of ``pieces`` members / frames."""
    data = path.read_bytes()
    cuts = [len(data) * i // pieces for i in range(pieces + 1)]
    parts = [data[a:b] for a, b in zip(cuts, cuts[1:])]
    if kind == "gz":
        blob = b"".join(gzip.compress(p) for p in parts)
    else:
        blob = b"".join(zstandard.ZstdCompressor().compress(p) for p in parts)
    target = path.with_name(path.name + "." + kind)
    target.write_bytes(blob)
    path.unlink()
    return target


@pytest.fixture
def week(tmp_path: Path) -> tuple[Path, Path]:
    """(plain logs, a copy to compress): 7 days of 3000 lines, corrupt lines included."""
    plain = tmp_path / "plain"
    generate(str(plain), days=7, lines_per_day=3000, end=END, corrupt_share=0.01)
    mixed = tmp_path / "logs"
    shutil.copytree(plain, mixed)
    return plain, mixed


def outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.txt"))}


@pytest.mark.parametrize("kind", ["gz", "zst"])
def test_top50_on_compressed_days_writes_the_plain_logs_files(week, tmp_path, kind):
    plain, mixed = week
    for i, d in enumerate(sorted(mixed.iterdir())):
        if i % 2 == 0:  # every other day compressed, in 1, 2 or 3 members / frames
            compress(d, kind, pieces=1 + i % 3)
    names = sorted(p.name for p in mixed.iterdir())
    assert sum(n.endswith("." + kind) for n in names) == 4
    ref = cli("top50", "--logs", str(plain), "--out", str(tmp_path / "ref"), "--workers", "2",
              "--split-size", "16k", "--quiet", cwd=tmp_path)
    got = cli("top50", "--logs", str(mixed), "--out", str(tmp_path / "out"), "--workers", "2",
              "--split-size", "16k", "--quiet", cwd=tmp_path)
    assert ref.returncode == 0 and got.returncode == 0, got.stderr
    assert outputs(tmp_path / "out") == outputs(tmp_path / "ref")
    country, user = reference_files(str(plain), END, 7, 50)
    assert (tmp_path / "out" / f"country_top50_{END:%Y%m%d}.txt").read_text() == country
    assert (tmp_path / "out" / f"user_top50_{END:%Y%m%d}.txt").read_text() == user
    # the same corrupt lines, at the same offsets, as the plain day's
    import orjson
    for day in ("20240101", "20240103"):
        a = orjson.loads((tmp_path / "ref/store/daily" / f"day-{day}" / "manifest.json").read_bytes())
        b = orjson.loads((tmp_path / "out/store/daily" / f"day-{day}" / "manifest.json").read_bytes())
        assert a["corrupt_samples"] == b["corrupt_samples"] and a["corrupt_samples"]
        assert b["source"]["path"].endswith("." + kind)
    # the scratch copies are gone
    assert not [p for p in (tmp_path / "out").rglob("*") if ".tmp-" in p.name]
    again = cli("top50", "--logs", str(mixed), "--out", str(tmp_path / "out"), "--quiet",
                cwd=tmp_path)
    assert again.returncode == 0 and "0 lines read" in again.stdout  # cached, compressed or not


def test_top_and_run_on_zstd_and_gzip(week, tmp_path):
    plain, mixed = week
    days = sorted(mixed.iterdir())
    compress(days[-1], "zst")
    compress(days[-2], "gz")
    ref = cli("top", "--logs", str(plain), "--out", str(tmp_path / "ref"), "--days", "3",
              "--top", "5", "--quiet", cwd=tmp_path)
    got = cli("top", "--logs", str(mixed), "--out", str(tmp_path / "top"), "--days", "3",
              "--top", "5", "--quiet", cwd=tmp_path)
    assert ref.returncode == 0 and got.returncode == 0, got.stderr
    assert outputs(tmp_path / "top") == outputs(tmp_path / "ref")
    run = cli("run", "jobs.top50:TopSongs", "--logs", str(mixed), "--out", str(tmp_path / "run"),
              "--days", "3", "--top", "5", "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert outputs(tmp_path / "run") == outputs(tmp_path / "ref")


def test_a_day_both_plain_and_compressed_is_an_error_naming_both(week, tmp_path):
    _, mixed = week
    log = mixed / f"listen-{END:%Y%m%d}.log"
    (mixed / (log.name + ".gz")).write_bytes(gzip.compress(log.read_bytes()))
    got = cli("top50", "--logs", str(mixed), "--out", str(tmp_path / "out"), "--quiet",
              cwd=tmp_path)
    assert got.returncode == 1
    err = got.stderr.strip().splitlines()
    assert len(err) == 1 and str(log) in err[0] and f"{log}.gz" in err[0], err


def test_a_damaged_compressed_log_is_a_one_line_error(week, tmp_path):
    _, mixed = week
    target = compress(mixed / f"listen-{END:%Y%m%d}.log", "gz")
    target.write_bytes(target.read_bytes()[:-100])  # cut short
    got = cli("top50", "--logs", str(mixed), "--out", str(tmp_path / "out"), "--quiet",
              cwd=tmp_path)
    assert got.returncode == 1
    err = got.stderr.strip().splitlines()
    assert len(err) == 1 and "cannot decompress" in err[0] and target.name in err[0], err
    assert not [p for p in (tmp_path / "out").rglob("*") if ".tmp-" in p.name]
