"""Memory under load: a day with three times the usual number of distinct users is reduced and
ranked inside the same memory budget as a usual day (the map combines and spills by bytes, the
window slices partitions by rows), not in memory that grows with the users."""
from __future__ import annotations

import pytest

from jobs.generate import generate
from tests.conftest import DAY
from tests.reliability.helpers import assert_ok, run_cli, summary

LINES = 2_000_000
USUAL_USERS = LINES // 12  # generate's default population for this many lines


def _run(tmp_path, name: str, users: int) -> tuple[int, int]:
    logs, out = tmp_path / name / "logs", tmp_path / name / "out"
    generate(str(logs), days=1, lines_per_day=LINES, end=DAY, users=users)
    assert_ok(run_cli("top50", "--logs", str(logs), "--out", str(out), "--workers", "2",
                      timeout=300))
    with open(out / "user_top50_20240107.txt", "rb") as f:
        distinct_users = sum(1 for _ in f)
    return distinct_users, summary(out)["peak_rss_bytes"]


@pytest.mark.slow
def test_three_times_the_users_same_memory_budget(tmp_path):
    usual_users, usual_peak = _run(tmp_path, "usual", USUAL_USERS)
    # Users' activity is heavy-tailed, so a population 6x as large gives over 3x the distinct
    # users who listen in a day; checked, not assumed.
    many_users, many_peak = _run(tmp_path, "many", 6 * USUAL_USERS)
    assert many_users >= 3 * usual_users, (usual_users, many_users)
    # the whole process tree's peak, workers included; a 3x day may cost a little more, not 3x
    assert many_peak <= 1.2 * usual_peak + (16 << 20), (usual_peak, many_peak)
