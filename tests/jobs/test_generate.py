"""The generator: id widths, determinism, the narrow ids' old bytes, and no silent overwrite."""
from __future__ import annotations

import datetime as dt
import hashlib
import os

import numpy as np
import pytest

from jobs.generate import (CORRUPT_KINDS, MAX_ID, _corrupt_line, digit_shares, generate,
                           make_population, spread_ids)
from jobs.listens import parse_block
from mapreduce.cli import main
from mapreduce.errors import UsageError

END = dt.date(2024, 1, 7)

#: sha256 of the logs the generator wrote before it had id widths (commit 04d7321), for
#: days=2, lines_per_day=5000, seed=42, corrupt_share=0.01: narrow ids must reproduce them
OLD_LOGS = {
    "listen-20240106.log": "0c97915dc659d87396577c46fa78098e2a1d0d8c2ed281889c20ff534dba48ac",
    "listen-20240107.log": "6ab65f368a07614492e8498a4d3505046eb7fe89fb2a46dcb64d8f69495d3e9a",
}


def sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def digits(ids: np.ndarray) -> np.ndarray:
    return np.char.str_len(ids.astype(str))


def test_narrow_ids_give_the_old_logs_byte_for_byte(tmp_path):
    paths = generate(str(tmp_path), days=2, lines_per_day=5000, end=END, seed=42,
                     corrupt_share=0.01, id_width="narrow")
    assert {os.path.basename(p): sha(p) for p in paths} == OLD_LOGS


@pytest.mark.parametrize("width", ["realistic", "wide"])
def test_id_widths_follow_their_shares(width):
    pop = make_population(3, 200_000, 150_000, width)
    for kind, ids in (("song", pop.songs), ("user", pop.users)):
        assert len(np.unique(ids)) == len(ids)  # the map from index to id is injective
        assert ids.min() >= 1 and ids.max() <= MAX_ID
        counts = np.bincount(digits(ids), minlength=20)[1:] / len(ids)
        want = digit_shares(kind, width)
        # widths 1-3 hold fewer ids than their share asks (9, 90, 900): the rest go one width up
        assert np.abs(counts[4:] - want[4:]).max() < 0.002, (kind, counts, want)
        assert counts[8:10].sum() > (0.75 if width == "realistic" else 0.5)  # most 9-10 digits
        long = counts[10:].sum()
        if width == "wide":
            # a third, plus for users their share of the long ids (11-19 digits) at 16-19
            long_users = 0.015 * 2 / 3 * 4 / 9 if kind == "user" else 0
            assert abs(counts[15:].sum() - (1 / 3 + long_users)) < 0.005
        elif kind == "user":
            assert 0.01 <= long <= 0.02 and counts[18] > 0  # a few up to 19 digits
        else:
            assert long == 0


def test_spread_ids_fills_small_widths_then_moves_up():
    rng = np.random.default_rng(0)
    shares = np.zeros(19)
    shares[0] = 1.0  # all one digit: only 9 ids exist, the rest must be wider and distinct
    ids = spread_ids(500, shares, rng)
    assert len(np.unique(ids)) == 500
    assert sorted(ids[digits(ids) == 1].tolist()) == list(range(1, 10))
    assert (digits(ids) <= 3).all()


def test_widths_change_only_the_ids(tmp_path):
    """Same seed, other width: the same lines with each id replaced one-to-one."""
    logs = {}
    for width in ("narrow", "realistic", "wide"):
        (path,) = generate(str(tmp_path / width), days=1, lines_per_day=20_000, end=END,
                           corrupt_share=0.02, id_width=width)
        with open(path, "rb") as f:
            logs[width] = parse_block(f.read())
    narrow = logs["narrow"]
    for width in ("realistic", "wide"):
        other = logs[width]
        assert other["lines"] == narrow["lines"] and other["corrupt"] == narrow["corrupt"]
        assert other["country"].tolist() == narrow["country"].tolist()
        for column in ("song", "user"):
            pairs = set(zip(narrow[column].tolist(), other[column].tolist()))
            assert len({a for a, _ in pairs}) == len({b for _, b in pairs}) == len(pairs)
        assert digits(other["song"]).max() >= 9


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = generate(str(tmp_path / "a"), days=1, lines_per_day=3000, end=END, seed=5)
    b = generate(str(tmp_path / "b"), days=1, lines_per_day=3000, end=END, seed=5)
    c = generate(str(tmp_path / "c"), days=1, lines_per_day=3000, end=END, seed=6)
    assert sha(a[0]) == sha(b[0]) != sha(c[0])


@pytest.mark.parametrize("width", ["realistic", "wide"])
def test_every_corruption_kind_is_corrupt_at_every_width(width):
    pop = make_population(1, 500, 400, width)
    rng = np.random.default_rng(0)
    wide_song, wide_user = int(pop.songs.max()), int(pop.users.max())
    for kind in CORRUPT_KINDS:
        for song, user in ((wide_song, wide_user), (int(pop.songs.min()), int(pop.users.min()))):
            line = _corrupt_line(kind, song, user, "FR", rng)
            parsed = parse_block(line + b"\n")
            assert parsed["lines"] == 1 and parsed["corrupt"] == 1, (kind, line)


def test_existing_logs_are_not_overwritten_without_force(tmp_path):
    out = tmp_path / "logs"
    out.mkdir()
    middle = out / "listen-20240106.log"
    middle.write_bytes(b"a real log\n")
    with pytest.raises(UsageError, match="listen-20240106.log already exists.*--force"):
        generate(str(out), days=3, lines_per_day=100, end=END)
    # nothing written, not even the names that were free
    assert sorted(os.listdir(out)) == ["listen-20240106.log"]
    assert middle.read_bytes() == b"a real log\n"
    paths = generate(str(out), days=3, lines_per_day=100, end=END, force=True)
    assert [os.path.basename(p) for p in paths] == ["listen-20240105.log", "listen-20240106.log",
                                                     "listen-20240107.log"]
    assert middle.read_bytes() != b"a real log\n"
    with pytest.raises(UsageError, match="listen-20240105.log and 2 more"):
        generate(str(out), days=3, lines_per_day=100, end=END)


def test_cli_refuses_to_overwrite(tmp_path, capsys):
    out = str(tmp_path / "logs")
    assert main(["generate", "--out", out, "--days", "1", "--lines-per-day", "50"]) == 0
    before = sha(os.path.join(out, "listen-20240107.log"))
    capsys.readouterr()
    assert main(["generate", "--out", out, "--days", "1", "--lines-per-day", "60"]) == 2
    err = capsys.readouterr().err
    assert "listen-20240107.log already exists" in err and "Traceback" not in err
    assert sha(os.path.join(out, "listen-20240107.log")) == before
