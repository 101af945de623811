from __future__ import annotations

import collections
import os
import random
import subprocess
import sys

import pytest

from mapreduce import JobError
from mapreduce.codec import encode
from mapreduce.executors import make_backend
from mapreduce.runner import run_job
from tests.conftest import ROOT, temp_names
from tests.oracle import parse_line, split_lines

JOB = "jobs.song_plays:SongPlays"


def _make_inputs(folder, files=3, lines=4000, seed=1):
    rng = random.Random(seed)
    paths = []
    for i in range(files):
        path = os.path.join(folder, f"in-{i}.log")
        with open(path, "wb") as f:
            for _ in range(lines):
                song = str(int(rng.paretovariate(1.2)))
                f.write(f"{song}|{rng.randint(1, 99)}|FR{rng.choice(['', chr(13)])}\n".encode())
            f.write(b"no-newline-song|1|DE")
        paths.append(path)
    return paths


def _expected(paths) -> bytes:
    counts = collections.Counter()
    for path in paths:
        with open(path, "rb") as f:
            for raw in split_lines(f.read()):
                parsed = parse_line(raw)  # SongPlays counts valid lines only
                if parsed:
                    counts[parsed[0]] += 1
    return b"".join(encode(k) + b"\t" + encode(v) + b"\n" for k, v in sorted(counts.items()))


@pytest.mark.parametrize("reducers,split_size", [(1, 1 << 20), (3, 997), (8, 50_000)])
def test_example_job_equals_counter(tmp_path, backend, reducers, split_size):
    paths = _make_inputs(tmp_path)
    out = tmp_path / "out" / "song_plays.tsv"
    result = run_job(JOB, paths, str(out), backend, reducers=reducers, split_size=split_size)
    assert out.read_bytes() == _expected(paths)
    report = result.report
    assert report["lines"] == 3 * 4001
    assert report["input_bytes"] == sum(os.path.getsize(p) for p in paths)
    assert report["stage_seconds"].keys() >= {"map", "reduce", "commit"}
    assert report["peak_rss_bytes"] > 0
    assert os.path.exists(str(out) + ".report.json")
    assert temp_names(str(tmp_path / "out")) == []


def test_one_worker_and_three_workers_agree(tmp_path):
    paths = _make_inputs(tmp_path, files=2, lines=3000)
    outputs = []
    for workers in (1, 3):
        out = tmp_path / f"w{workers}" / "plays.tsv"
        with make_backend("local", workers) as backend:
            run_job(JOB, paths, str(out), backend, reducers=4, split_size=4096)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == _expected(paths)


def test_sigkilled_worker_is_retried(tmp_path, monkeypatch):
    monkeypatch.setenv("MR_TEST_KILL_MARKER", str(tmp_path / "killed-once"))
    paths = _make_inputs(tmp_path, files=1, lines=2000)
    with open(paths[0], "ab") as f:
        f.write(b"\nkill\n")
    out = tmp_path / "out" / "plays.tsv"
    with make_backend("local", 2) as backend:
        run_job("tests.jobs_for_tests:KillsItsWorkerOnce", paths, str(out), backend,
                reducers=2, split_size=8192)
    assert (tmp_path / "killed-once").exists()
    assert out.read_bytes() == _expected(paths)


def test_worker_that_always_dies_fails_clearly(tmp_path):
    paths = _make_inputs(tmp_path, files=1, lines=100)
    with open(paths[0], "ab") as f:
        f.write(b"\nkill\n")
    out = tmp_path / "out" / "plays.tsv"
    with make_backend("local", 2) as backend:
        with pytest.raises(JobError, match="worker process died") as info:
            run_job("tests.jobs_for_tests:KillsItsWorkerAlways", paths, str(out), backend,
                    retries=2)
    assert info.value.stage == "map"
    assert not out.exists() and temp_names(str(tmp_path / "out")) == []


def test_failing_task_names_stage_task_and_split(tmp_path, backend):
    paths = _make_inputs(tmp_path, files=2, lines=500)
    with open(paths[1], "ab") as f:
        f.write(b"\nboom\n")
    size = os.path.getsize(paths[1])
    out = tmp_path / "out" / "plays.tsv"
    with pytest.raises(JobError) as info:
        run_job("tests.jobs_for_tests:RaisesOnBoom", paths, str(out), backend, split_size=1 << 20)
    err = info.value
    assert err.stage == "map" and err.task == 1
    assert err.split == f"{paths[1]}[0:{size}]"
    assert "map stage, task 1, split" in str(err) and "cannot map 'boom'" in str(err)
    assert isinstance(err.__cause__, ValueError)
    assert os.listdir(tmp_path / "out") == []  # no output, no report, no temporary file


def test_map_spills_over_its_memory_budget(tmp_path, backend):
    paths = _make_inputs(tmp_path, files=1, lines=60_000)
    out = tmp_path / "out" / "plays.tsv"
    result = run_job(JOB, paths, str(out), backend, memory_budget=1, reducers=3)
    assert result.report["spills"] >= 3
    assert out.read_bytes() == _expected(paths)


def test_unknown_job_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot import job module"):
        run_job("no_such_module:Job", [], str(tmp_path / "x"), make_backend("inline"))


def test_worker_killed_while_sending_its_result_does_not_hang_the_run(tmp_path):
    """Half a result message left in the pool's pipe: the run must start over, finish right,
    and the process must still exit (the pool's manager thread waited for ever, and kept it)."""
    paths = _make_inputs(tmp_path, files=1, lines=500)
    with open(paths[0], "ab") as f:
        f.write(b"\nhalf\n")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "mapreduce.cli", "run", "tests.jobs_for_tests:DiesMidResult",
         paths[0], "--out", str(out), "--workers", "1", "--reducers", "2", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": ROOT, "MR_TEST_KILL_MARKER": str(tmp_path / "killed")})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "killed").exists()
    assert (out / "jobs_for_tests.tsv").read_bytes() == _expected(paths)  # named after its module
