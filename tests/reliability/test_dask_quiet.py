"""``--quiet`` on Dask: distributed's own loggers must not print their warnings (issue 14: "Couldn't
gather 1 keys, rescheduling" and the like showed under --quiet).

A real run in a child process, on a local cluster of one worker process that the job SIGKILLs
once: the nanny restarts it and the scheduler reruns the task, which distributed reports at
WARNING. Without quiet those lines show (so the case does provoke them); with quiet they must
not, while our own warnings still do.
"""
from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest

pytest.importorskip("distributed")

from jobs.generate import generate  # noqa: E402
from tests.reliability.helpers import cli_env  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

SCRIPT = """
import logging, os, sys
# as mapreduce.cli.main sets things up without -v
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                    stream=sys.stderr)
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
from mapreduce.dask_backend import DaskBackend
from mapreduce.runner import run_job
quiet = sys.argv[1] == "quiet"
backend = DaskBackend(1, scheduler=None, **({"quiet": True} if quiet else {}))
try:
    result = run_job("tests.reliability.jobs:DailyListensKillsItsWorkerOnce", [sys.argv[2]],
                     sys.argv[3], backend, reducers=2, split_size=16 * 1024, quiet=True)
    logging.getLogger("mapreduce.test").warning("our own warning still shows")
finally:
    backend.close()
print(result.report["lines"])
"""


@pytest.mark.parametrize("quiet", [False, True])
def test_quiet_dask_run_prints_no_distributed_warnings(tmp_path, quiet):
    logs = generate(str(tmp_path / "logs"), days=1, lines_per_day=3000, end=dt.date(2024, 1, 7))
    marker = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, "quiet" if quiet else "loud", logs[0],
                           str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True,
                          timeout=180, env=cli_env(MR_TEST_KILL_MARKER=str(marker)))
    assert proc.returncode == 0, proc.stderr
    assert marker.exists(), "the worker was not killed: nothing for distributed to report"
    assert proc.stdout.strip() == "3000"
    lines = proc.stderr.strip().splitlines()
    assert "WARNING mapreduce.test: our own warning still shows" in lines
    theirs = [line for line in lines if "distributed" in line]
    if quiet:
        assert theirs == [], proc.stderr
    else:  # the case provokes them: without quiet they print
        assert any("WARNING" in line for line in theirs), proc.stderr
