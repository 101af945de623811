"""Two commands on one store at once are serialised by its lock: each gets right files, the
days are reduced once between them, output sets are never mixed; ``--no-wait`` on the second
is a clear one-line message and exit 1."""
from __future__ import annotations

import os
import re
import time

import orjson
import pytest

from jobs.generate import generate
from mapreduce.store import Store
from tests.conftest import DAY
from tests.oracle import reference_files
from tests.reliability.helpers import assert_error, assert_ok, finish, no_temps, start_cli

LINES_PER_DAY = 30_000


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("concurrent") / "logs"
    generate(str(folder), days=7, lines_per_day=LINES_PER_DAY, end=DAY)
    return folder


def _top(logs, out, *extra: str) -> list[str]:
    return ["top", "--logs", str(logs), "--out", str(out), "--workers", "1", "--quiet", *extra]


def _lines_read(stdout: str) -> int:
    return int(re.search(r"(\d+) lines read", stdout).group(1))


def _check_set(out, stem: str, days: int, top: int, logs) -> None:
    """The files of one window, right, and the summary beside them is theirs."""
    country, user = reference_files(str(logs), DAY, days, top)
    assert (out / f"country_{stem}.txt").read_text() == country
    assert (out / f"user_{stem}.txt").read_text() == user
    summary = orjson.loads((out / f"{stem}.summary.json").read_bytes())
    assert summary["output_lines"] == {"country": country.count("\n"), "user": user.count("\n")}
    assert summary["top"] == top and summary["window"]["days"] == days


def test_two_runs_at_once_are_serialised(tmp_path, logs):
    """Started together on a cold store: one reduces the 7 days, the other waits for the lock
    and finds them all cached. Without the lock both would read every log."""
    out = tmp_path / "out"
    procs = [start_cli(_top(logs, out)),
             start_cli(_top(logs, out, "--days", "3", "--top", "5"))]
    results = [finish(p) for p in procs]
    for result in results:
        assert_ok(result)
    assert sorted(_lines_read(r.stdout) for r in results) in (
        [0, 7 * LINES_PER_DAY],             # the week went first: the 3 days were cached
        [3 * LINES_PER_DAY, 4 * LINES_PER_DAY])  # the 3 days went first
    _check_set(out, "top50_20240107", 7, 50, logs)
    _check_set(out, "top5_3days_20240107", 3, 5, logs)
    no_temps(out)


def test_same_window_twice_at_once(tmp_path, logs):
    out = tmp_path / "out"
    results = [finish(p) for p in [start_cli(_top(logs, out)) for _ in range(2)]]
    for result in results:
        assert_ok(result)
    assert sorted(_lines_read(r.stdout) for r in results) == [0, 7 * LINES_PER_DAY]
    _check_set(out, "top50_20240107", 7, 50, logs)
    no_temps(out)


def test_no_wait_while_another_holds_the_lock(tmp_path, logs):
    """Deterministic: this process holds the store's lock."""
    out = tmp_path / "out"
    store = Store(str(out / "store"), step="daily")
    with store.locked():
        result = finish(start_cli(_top(logs, out, "--no-wait")), timeout=60)
    assert_error(result, 1, f"another job (pid {os.getpid()}) is running on store {store.root}",
                 "try again later or run without --no-wait")
    assert not [n for n in os.listdir(out) if n.endswith((".txt", ".json"))]
    no_temps(out)


def test_without_no_wait_the_second_waits(tmp_path, logs):
    out = tmp_path / "out"
    store = Store(str(out / "store"), step="daily")
    with store.locked():
        proc = start_cli(_top(logs, out, "--days", "1"))
        time.sleep(1.0)
        assert proc.poll() is None  # still waiting for us
    result = finish(proc)
    assert_ok(result)
    _check_set(out, "top50_1days_20240107", 1, 50, logs)


def test_no_wait_against_a_real_running_command(tmp_path, logs):
    """A second child with --no-wait while the first holds the lock (seen in the lock file)."""
    out = tmp_path / "out"
    first = start_cli(_top(logs, out))
    lock = out / "store" / ".lock"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and first.poll() is None:
        if lock.exists() and lock.read_text().strip() == str(first.pid):
            break
        time.sleep(0.005)
    if first.poll() is not None:
        pytest.fail("the first run ended before it could be seen holding the lock")
    second = finish(start_cli(_top(logs, out, "--no-wait")), timeout=60)
    first_result = finish(first)
    assert_ok(first_result)
    assert_error(second, 1, f"another job (pid {first.pid}) is running on store")
    _check_set(out, "top50_20240107", 7, 50, logs)
    no_temps(out)
