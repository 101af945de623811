"""Bad command lines: exit 2 and exactly one line on stderr, never a traceback, and no output
written. Runs the real ``python -m mapreduce.cli`` child each time (quick: nothing gets to work)."""
from __future__ import annotations

import os

import pytest

from mapreduce.cli import main
from tests.conftest import DAY
from tests.reliability.helpers import (assert_error, assert_ok, permission_bound_preexec,
                                       run_cli, write_log)


@pytest.fixture
def logs(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    write_log(folder, DAY, b"1|2|FR\n")
    return folder


def _top50(logs, out, *extra: str) -> list[str]:
    return ["top50", "--logs", str(logs), "--out", str(out), *extra]


BAD = {
    # name: (arguments after the common ones, fragment of the message)
    "unknown_option": (["--bogus"], "unrecognized arguments: --bogus"),
    "unknown_option_value": (["--executor", "cloud"], "invalid choice: 'cloud'"),
    "date_month_13": (["--date", "20231345"], "--date '20231345' is not a real date"),
    "date_feb_30": (["--date", "2023-02-30"], "--date '2023-02-30' is not a real date"),
    "date_words": (["--date", "yesterday"], "--date 'yesterday' is not a real date"),
    "workers_0": (["--workers", "0"], "argument --workers: must be at least 1, got 0"),
    "workers_negative": (["--workers", "-2"], "argument --workers: must be at least 1, got -2"),
    "workers_text": (["--workers", "two"], "argument --workers: 'two' is not a whole number"),
    "reducers_0": (["--reducers", "0"], "argument --reducers: must be at least 1, got 0"),
    "split_size_0": (["--split-size", "0"], "'0' is not a size like 64M"),
    "date_before_year_1": (["--date", "00010103"], "would begin before the year 1"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_top50_options(tmp_path, logs, case):
    extra, says = BAD[case]
    out = tmp_path / "out"
    result = run_cli(*_top50(logs, out, *extra), timeout=60)
    assert_error(result, 2, says, only_line=True)
    written = os.listdir(out) if out.exists() else []
    assert not [n for n in written if n.endswith((".txt", ".json"))], written


TOP_BAD = {
    "days_0": (["--days", "0"], "--days must be at least 1, got 0"),
    "days_negative": (["--days", "-7"], "--days must be at least 1, got -7"),
    "days_fraction": (["--days", "1.5"], "argument --days: invalid int value: '1.5'"),
    "days_huge": (["--days", "99999999"], "would begin before the year 1"),
    "top_negative": (["--top", "-1"], "--top must be at least 1, got -1"),
    "top_0": (["--top", "0"], "--top must be at least 1, got 0"),
    "top_huge": (["--top", "1" + "0" * 20], "--top must be at most 9223372036854775807"),
    "job_missing": (["--job", "no.such:Job"], "cannot load window job 'no.such:Job'"),
    "job_not_window_job": (["--job", "jobs.song_plays:SongPlays"], "is not a TopSongs class"),
}


@pytest.mark.parametrize("case", list(TOP_BAD))
def test_bad_top_options(tmp_path, logs, case):
    extra, says = TOP_BAD[case]
    result = run_cli("top", "--logs", str(logs), "--out", str(tmp_path / "out"), *extra,
                     timeout=60)
    assert_error(result, 2, says, only_line=True)


def test_no_command_and_missing_arguments(tmp_path):
    result = run_cli(timeout=60)  # `mapreduce --quiet`: no command at all
    assert_error(result, 2, "unrecognized arguments", only_line=True)
    result = run_cli("top50", timeout=60)
    assert_error(result, 2, "the following arguments are required: --logs, --out",
                 only_line=True)
    result = run_cli("run", "jobs.song_plays:SongPlays", timeout=60)
    assert_error(result, 2, "required", only_line=True)


def test_output_folder_that_is_a_file(tmp_path, logs):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for args in (_top50(logs, afile), _top50(logs, afile / "sub"),
                 _top50(logs, tmp_path / "out", "--store", str(afile)),
                 ["run", "jobs.song_plays:SongPlays", str(logs / "listen-20240107.log"),
                  "--out", str(afile)]):
        result = run_cli(*args, timeout=60)
        assert_error(result, 2, str(afile), only_line=True)
    assert afile.read_text() == "not a folder"


@pytest.mark.parametrize("same", ["identical", "trailing_slash", "dot_dot", "symlink"])
def test_logs_and_output_in_the_same_folder(tmp_path, logs, same):
    out = {"identical": str(logs), "trailing_slash": f"{logs}/",
           "dot_dot": f"{logs}/../logs", "symlink": str(tmp_path / "link")}[same]
    if same == "symlink":
        os.symlink(logs, out)
    before = sorted(os.listdir(logs))
    result = run_cli(*_top50(logs, out), timeout=60)
    assert_error(result, 2, "--out must not be the logs folder", only_line=True)
    result = run_cli(*_top50(logs, tmp_path / "out", "--store", out), timeout=60)
    assert_error(result, 2, "--store must not be the logs folder", only_line=True)
    assert sorted(os.listdir(logs)) == before  # nothing was written among the logs


def test_output_folder_not_writable(tmp_path, logs):
    preexec = permission_bound_preexec()
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o555)
    log_path = str(logs / "listen-20240107.log")
    cases = [
        (_top50(logs, locked), f"output folder {locked} is not writable"),
        (_top50(logs, locked / "sub"), f"cannot create output folder {locked / 'sub'}"),
        (_top50(logs, tmp_path / "out", "--store", str(locked)),
         f"store folder {locked} is not writable"),
        (["run", "jobs.song_plays:SongPlays", log_path, "--out", str(locked)],
         f"output folder {locked} is not writable"),
    ]
    for args, says in cases:
        assert_error(run_cli(*args, preexec_fn=preexec, timeout=60), 2, says, only_line=True)
    assert os.listdir(locked) == []


def test_run_errors_with_multi_line_reasons_are_one_line(tmp_path):
    path = write_log(tmp_path, DAY, b"1|2|FR\nboom\n")
    result = run_cli("run", "tests.reliability.jobs:RaisesMultiLine", path, "--out",
                     str(tmp_path / "out"), "--workers", "1", timeout=60)
    assert_error(result, 1, "map stage, task 0", "first line of the reason second line third")
    assert not os.path.exists(tmp_path / "out" / "jobs.tsv")


def test_unexpected_exception_is_one_line(tmp_path, logs, monkeypatch, capsys):
    """Whatever goes wrong, the promise holds: one line, exit 1; -v logs the traceback."""
    import jobs.commands

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(jobs.commands, "run_window_command", broken)
    assert main(_top50(logs, tmp_path / "out", "--executor", "inline", "--quiet")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: internal error, please report it: KeyError: 'a bug' "
                   "(run with -v for the traceback)"]


def test_good_command_line_still_works(tmp_path, logs):
    """The same child, with good arguments, succeeds: the refusals above are the arguments'."""
    assert_ok(run_cli(*_top50(logs, tmp_path / "out", "--workers", "1"), timeout=60))
    assert (tmp_path / "out" / "country_top50_20240107.txt").read_text() == "FR|1:1\n"
