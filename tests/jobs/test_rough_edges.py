"""Two of the rough edges an operator hit (issue 14): a yearly window over a few logs warned in
one line of thousands of characters, and --scheduler without --executor dask was ignored."""
from __future__ import annotations

import datetime as dt

from jobs.generate import generate
from mapreduce.cli import main


def test_missing_days_warning_names_at_most_ten(tmp_path, caplog):
    logs = tmp_path / "logs"
    generate(str(logs), days=3, lines_per_day=200, end=dt.date(2024, 1, 7))
    assert main(["top", "--logs", str(logs), "--out", str(tmp_path / "out"), "--days", "365",
                 "--top", "10", "--executor", "inline", "--quiet"]) == 0
    warning = [r.getMessage() for r in caplog.records if "missing" in r.getMessage()]
    assert len(warning) == 1 and len(warning[0]) < 400, warning
    assert "362 day(s) missing" in warning[0] and "and 352 more (all listed in the summary)" \
        in warning[0]


def test_scheduler_without_the_dask_executor_is_a_bad_command_line(tmp_path, capsys):
    logs = tmp_path / "logs"
    generate(str(logs), days=1, lines_per_day=10, end=dt.date(2024, 1, 7))
    assert main(["top50", "--logs", str(logs), "--out", str(tmp_path / "out"),
                 "--scheduler", "tcp://127.0.0.1:8786"]) == 2
    assert capsys.readouterr().err.strip() == \
        "error: --scheduler is only used with --executor dask"
    assert not (tmp_path / "out" / "country_top50_20240107.txt").exists()
