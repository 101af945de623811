"""The framework stands alone: with the ``jobs`` package unimportable, the command line still
lists its commands and runs a job of the user's own on the real process pool."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

JOB = textwrap.dedent('''
    from mapreduce import Job, Option


    class WordLengths(Job):
        """Words per length; --min-length drops the short ones."""

        options = (Option("min_length", int, 1, "shortest word counted", minimum=1),)

        def mapper(self, line):
            for word in line.split():
                if len(word) >= self.min_length:
                    yield len(word), 1

        def reducer(self, length, counts):
            yield length, sum(counts)
''')


# Imported by every Python process started with it on PYTHONPATH (spawned workers too), ahead of
# any installed copy, editable or not: no module of the jobs package can be imported.
HIDE_JOBS = textwrap.dedent('''
    import sys


    class _HideJobs:
        def find_spec(self, name, path=None, target=None):
            if name == "jobs" or name.startswith("jobs."):
                raise ImportError("jobs hidden by the test")
            return None


    sys.meta_path.insert(0, _HideJobs())
''')


def _env(tmp_path) -> dict[str, str]:
    hidden = tmp_path / "hide"
    hidden.mkdir(exist_ok=True)
    (hidden / "sitecustomize.py").write_text(HIDE_JOBS)
    return {**os.environ, "PYTHONPATH": str(hidden)}


def _cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mapreduce", *args], cwd=tmp_path,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=120)


def test_help_and_run_work_with_jobs_unimportable(tmp_path):
    probe = subprocess.run([sys.executable, "-c", "import jobs"], cwd=tmp_path, text=True,
                           capture_output=True, env=_env(tmp_path))
    helped = _cli(tmp_path, "--help")
    assert helped.returncode == 0, helped.stderr
    assert "run" in helped.stdout and "could not be loaded: " in helped.stdout
    assert "jobs hidden by the test" in helped.stdout
    assert probe.returncode == 1 and "jobs hidden by the test" in probe.stderr

    (tmp_path / "my_job.py").write_text(JOB)
    (tmp_path / "words.txt").write_text("a bb ccc dddd\n" * 1000 + "ee ff\n" * 7)
    job_help = _cli(tmp_path, "run", "my_job.py:WordLengths", "--help")
    assert job_help.returncode == 0 and "--min-length MIN_LENGTH" in job_help.stdout

    ran = _cli(tmp_path, "run", "my_job.py:WordLengths", "words.txt", "--out", "out",
               "--workers", "2", "--reducers", "3", "--split-size", "4k", "--min-length", "2")
    assert ran.returncode == 0, ran.stderr
    lines = (tmp_path / "out" / "my_job.tsv").read_text().splitlines()
    assert lines == ["2\t1014", "3\t1000", "4\t1000"]
