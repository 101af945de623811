"""An exception in a job is a job author's friend: run through the real command line, the one
error line names the job, the step (windowed runs), the stage, the task and the input's byte
range; ``--executor inline`` (always) and ``-v`` (any executor) print the job's own traceback
with its file and line; without either, the output is that one line and no traceback."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

from jobs.generate import generate
from tests.conftest import DAY, ROOT

RECORD_JOB = textwrap.dedent('''\
    from mapreduce import Job


    class Breaks(Job):
        def mapper(self, line):
            if line.endswith("|FR"):
                raise ValueError(f"cannot map {line!r}")
            yield 1, 1

        def reducer(self, key, values):
            yield key, sum(values)
''')
RECORD_RAISE_LINE = 7

WINDOW_JOB = textwrap.dedent('''\
    from jobs.distinct_listeners import DistinctListeners


    class BreaksInMap(DistinctListeners):
        def map_block(self, block, offset):
            raise RuntimeError("map_block failed")


    class BreaksInFinalize(DistinctListeners):
        def finalize(self, channel, table):
            raise RuntimeError("finalize failed")
''')
MAP_RAISE_LINE, FINALIZE_RAISE_LINE = 6, 11


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    generate(str(root / "logs"), days=2, lines_per_day=3000, end=DAY)
    (root / "breaks.py").write_text(RECORD_JOB)
    (root / "window_breaks.py").write_text(WINDOW_JOB)
    return root


def _cli(folder, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "mapreduce", *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=180)


def _error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert lines[-1].startswith("error: ") and "\n" not in lines[-1], result.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1, result.stderr
    return lines[-1]


def _frame(result: subprocess.CompletedProcess, file: str, line: int, function: str) -> bool:
    return re.search(rf'File ".*{re.escape(file)}", line {line}, in {function}',
                     result.stderr) is not None


def test_record_job_inline_shows_file_and_line_and_names_the_byte_range(folder):
    log = folder / "logs" / f"listen-{DAY:%Y%m%d}.log"
    size = log.stat().st_size
    result = _cli(folder, "run", "./breaks.py:Breaks", str(log), "--out", "out",
                  "--executor", "inline")
    line = _error_line(result)
    assert line.startswith(f"error: job breaks.py:Breaks, map stage, task 0, split "
                           f"{log}[0:{size}]: ValueError: cannot map '"), line
    assert "Traceback" in result.stderr and _frame(result, "breaks.py", RECORD_RAISE_LINE, "mapper")
    assert not (folder / "out" / "breaks.tsv").exists()


def test_record_job_on_the_pool_one_line_and_traceback_under_v(folder):
    log = folder / "logs" / f"listen-{DAY:%Y%m%d}.log"
    quiet = _cli(folder, "run", "breaks:Breaks", str(log), "--out", "out", "--workers", "2",
                 "--split-size", "16k")
    line = _error_line(quiet)
    # `python -m` puts the current folder on sys.path: the module is found as it was named
    assert re.match(rf"error: job breaks:Breaks, map stage, task \d+, split "
                    rf"{re.escape(str(log))}\[\d+:\d+\]: ValueError: cannot map '", line), line
    assert "Traceback" not in quiet.stderr
    verbose = _cli(folder, "-v", "run", "breaks:Breaks", str(log), "--out", "out",
                   "--workers", "2")
    _error_line(verbose)
    # the worker's own traceback, sent back by the pool
    assert _frame(verbose, "breaks.py", RECORD_RAISE_LINE, "mapper"), verbose.stderr


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_windowed_job_names_its_step(folder, executor):
    log = folder / "logs" / f"listen-{DAY:%Y%m%d}.log"
    args = ["--logs", "logs", "--out", f"out-{executor}", "--days", "1",
            "--executor", executor, "--workers", "2"]
    mapped = _cli(folder, "run", "window_breaks.py:BreaksInMap", *args)
    line = _error_line(mapped)
    assert line == (f"error: job window_breaks.py:BreaksInMap, per-input step, map stage, task 0, "
                    f"split {log}[0:{log.stat().st_size}]: RuntimeError: map_block failed"), line
    assert _frame(mapped, "window_breaks.py", MAP_RAISE_LINE, "map_block") == (executor == "inline")

    finalized = _cli(folder, "run", "window_breaks.py:BreaksInFinalize", *args)
    line = _error_line(finalized)
    assert re.fullmatch(r"error: job window_breaks\.py:BreaksInFinalize, window step, window "
                        r"stage, task \d+, split country partition \d+: RuntimeError: finalize "
                        r"failed", line), line
    assert _frame(finalized, "window_breaks.py", FINALIZE_RAISE_LINE,
                  "finalize") == (executor == "inline")
    assert not [n for n in os.listdir(folder / f"out-{executor}") if n.endswith(".txt")]
