"""The Dask backend against a real cluster of worker processes on this machine.

One LocalCluster (2 single-threaded worker processes, loopback only) serves the whole module. Every
run that could hang if something went wrong runs under a timeout, so a regression fails the test
instead of blocking the suite.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import Executor, Future
from typing import Any, Callable

import psutil
import pytest

pytest.importorskip("distributed")
from distributed import Client, KilledWorker, LocalCluster  # noqa: E402

from jobs.generate import generate  # noqa: E402
from jobs.top50 import Top50
from mapreduce.windowed import run_window_job  # noqa: E402
from mapreduce import cli  # noqa: E402
from mapreduce.dask_backend import DaskBackend  # noqa: E402
from mapreduce.errors import JobError  # noqa: E402
from mapreduce.executors import make_backend  # noqa: E402
from mapreduce.runner import run_job, run_stage  # noqa: E402
from tests.oracle import reference_files  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
END = dt.date(2024, 1, 7)
PLAYS = "jobs.song_plays:SongPlays"
SPLIT = 64 * 1024  # about ten map tasks over the two plays logs
TIMEOUT = 60.0


def within(seconds: float, fn: Callable[[], Any]) -> Any:
    """``fn()``, failing the test if it has not returned after ``seconds`` (a hang)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)  # daemon: a hung run cannot block exit
    t.start()
    t.join(seconds)
    if t.is_alive():
        pytest.fail(f"still running after {seconds:.0f} s: hung")
    if "error" in box:
        raise box["error"]
    return box["result"]


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture
def backend(cluster, client):
    client.wait_for_workers(2, timeout=30)  # a worker killed by an earlier test is back
    b = DaskBackend(None, scheduler=cluster.scheduler_address)
    yield b
    b.close()


@pytest.fixture(scope="module")
def plays(tmp_path_factory) -> tuple[list[str], bytes]:
    """Two days of logs and the local process pool's SongPlays output over them."""
    root = tmp_path_factory.mktemp("plays")
    logs = generate(str(root / "logs"), days=2, lines_per_day=20_000, end=END)
    with make_backend("local", 2) as local:
        run_job(PLAYS, logs, str(root / "local.tsv"), local, reducers=4, split_size=SPLIT)
    return logs, read(str(root / "local.tsv"))


def test_song_plays_same_bytes_as_local(backend, client, plays, tmp_path):
    logs, expected = plays
    out = str(tmp_path / "plays.tsv")
    result = within(TIMEOUT, lambda: run_job(PLAYS, logs, out, backend, reducers=4,
                                             split_size=SPLIT))
    assert read(out) == expected
    report = json.loads(read(out + ".report.json"))
    assert report["executor"] == "dask" and report["workers"] == 2
    assert sorted(report["worker_addresses"]) == sorted(client.scheduler_info()["workers"])
    # workers_used names the processes that ran map tasks: the cluster's worker processes
    pids = client.run(os.getpid)
    hosts = {f"{os.uname().nodename}:{pid}" for pid in pids.values()}
    assert result.report["map_tasks"] > 2
    assert report["workers_used"] and set(report["workers_used"]) <= hosts


def test_top50_week_same_files_as_local_and_oracle(backend, tmp_path):
    logs = str(tmp_path / "logs")
    generate(logs, days=7, lines_per_day=3000, end=END)
    with make_backend("local", 2) as local:
        local_summary = run_window_job(Top50(), logs, str(tmp_path / "local"), local,
                                       partitions=8)
    summary = within(TIMEOUT, lambda: run_window_job(Top50(), logs, str(tmp_path / "dask"),
                                                     backend, partitions=8))
    assert summary["executor"] == "dask"
    country, user = reference_files(logs, END, 7, 50)
    for channel, text in (("country", country), ("user", user)):
        dask_file, local_file = summary["files"][channel], local_summary["files"][channel]
        assert os.path.basename(dask_file) == f"{channel}_top50_20240107.txt"
        assert read(dask_file) == read(local_file) == text.encode()


def test_task_error_names_stage_and_backend_stays_usable(backend):
    import math

    with pytest.raises(JobError) as info:
        within(TIMEOUT, lambda: run_stage(backend, "map", [4.0, -1.0], math.sqrt))
    assert str(info.value) == "map stage, task 1: ValueError: math domain error"
    assert isinstance(info.value.__cause__, ValueError)
    # abort left a working executor: a window job reruns a day on the same backend after this
    assert within(TIMEOUT, lambda: run_stage(backend, "again", [9.0], math.sqrt)) == [3.0]


def test_damaged_store_table_is_recomputed_on_the_same_backend(backend, tmp_path):
    """The ChecksumError crosses from a worker intact, and the backend works after the abort."""
    logs = str(tmp_path / "logs")
    generate(logs, days=2, lines_per_day=2000, end=END)
    out = str(tmp_path / "out")
    first = within(TIMEOUT, lambda: run_window_job(Top50(), logs, out, backend, partitions=4))
    expected = read(first["files"]["country"])
    table = os.path.join(out, "store", "daily", "day-20240106", "country-00000.tbl")
    with open(table, "r+b") as f:
        f.seek(10)
        f.write(b"XXXX")
    again = within(TIMEOUT, lambda: run_window_job(Top50(), logs, out, backend, partitions=4))
    assert again["days"]["2024-01-06"]["cached"] is False
    assert read(again["files"]["country"]) == expected


class _Dead(Executor):
    """Every task fails as dask fails one whose workers kept dying."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        worker = type("W", (), {"address": "tcp://10.0.0.7:4321"})()
        future.set_exception(KilledWorker("run_map-1", worker, 3))
        return future


def test_killed_worker_message(backend):
    backend.executor = _Dead()
    with pytest.raises(JobError) as info:
        run_stage(backend, "map", ["a"], str, where=lambda t: "logs/x.log[0:10]")
    message = str(info.value)
    assert message.startswith("map stage, task 0, split logs/x.log[0:10]: a worker process died "
                              "running this task 4 times")
    assert "tcp://10.0.0.7:4321" in message and "KilledWorker" in message
    assert "\n" not in message


def test_own_local_cluster_for_one_run():
    """Without --scheduler the backend starts a loopback cluster of its own and stops it."""
    import math

    b = make_backend("dask", 1)
    try:
        assert b.workers == 1 and b.describe()["scheduler"].startswith("tcp://127.0.0.1:")
        assert within(TIMEOUT, lambda: run_stage(b, "map", [16.0], math.sqrt)) == [4.0]
    finally:
        b.close()
    assert b._cluster is None


def test_dask_gives_up_on_a_task_that_kills_its_worker(plays, tmp_path):
    """allowed-failures=0: the first death is final, so the JobError path runs for real."""
    logs, _ = plays
    with LocalCluster(n_workers=1, processes=True, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None,
                      scheduler_kwargs={"allowed_failures": 0,
                                        "dashboard_address": "127.0.0.1:0"}) as c:
        b = DaskBackend(None, scheduler=c.scheduler_address)
        try:
            with pytest.raises(JobError) as info:
                within(TIMEOUT, lambda: run_job("tests.jobs.dask_jobs:WorkerKiller", logs[:1],
                                                str(tmp_path / "x.tsv"), b, reducers=2))
        finally:
            b.close()
    assert str(info.value).startswith("job tests.jobs.dask_jobs:WorkerKiller, map stage, task 0, split ")
    assert "worker process died" in str(info.value)
    assert isinstance(info.value.__cause__, KilledWorker)
    assert not os.path.exists(tmp_path / "x.tsv")


def test_worker_killed_mid_map_is_retried(backend, client, plays, tmp_path):
    logs, expected = plays
    pids = client.run(os.getpid)
    killed: list[int] = []
    stop = threading.Event()

    def kill_one_busy_worker() -> None:
        # wait until a worker is running a map task, then SIGKILL that worker's process
        while not stop.wait(0.02):
            for address, keys in client.processing().items():
                if any(str(k).startswith("run_map") for k in keys) and address in pids:
                    os.kill(pids[address], signal.SIGKILL)
                    killed.append(pids[address])
                    return

    killer = threading.Thread(target=kill_one_busy_worker, daemon=True)
    killer.start()
    out = str(tmp_path / "plays.tsv")
    try:
        # One death is well within allowed-failures (3): dask must rerun the task elsewhere and
        # the run succeed. (Giving up is test_dask_gives_up_on_a_task_that_kills_its_worker.)
        within(TIMEOUT, lambda: run_job("tests.jobs.dask_jobs:SlowSongPlays", logs, out, backend,
                                        reducers=4, split_size=SPLIT))
    finally:
        stop.set()
        killer.join(5)
    assert killed, "no worker was killed during the map stage"
    assert not psutil.pid_exists(killed[0]) or psutil.Process(killed[0]).status() == "zombie"
    assert read(out) == expected
    client.wait_for_workers(2, timeout=30)  # the nanny restarts the killed worker


def test_scheduler_lost_mid_run_is_one_line_error_not_a_hang(plays, tmp_path):
    """The client cancels its futures when the scheduler goes; the runner must stop at once."""
    logs, _ = plays
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": ROOT}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                                  "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                 **quiet)
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                               "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
                               "--no-dashboard"], **quiet)
    try:
        b = DaskBackend(None, scheduler=address)  # waits for the scheduler and its worker
        seen = threading.Event()

        def kill_scheduler_once_mapping() -> None:
            with Client(address, set_as_default=False) as watcher:
                while not seen.wait(0.02):
                    if any(str(k).startswith("run_map") for keys in watcher.processing().values()
                           for k in keys):
                        seen.set()
            scheduler.kill()

        threading.Thread(target=kill_scheduler_once_mapping, daemon=True).start()
        try:
            with pytest.raises(JobError) as info:
                within(TIMEOUT, lambda: run_job("tests.jobs.dask_jobs:SlowSongPlays", logs,
                                                str(tmp_path / "x.tsv"), b, reducers=2,
                                                split_size=SPLIT))
        finally:
            within(TIMEOUT, b.close)
        assert seen.is_set()
        assert str(info.value).startswith("job tests.jobs.dask_jobs:SlowSongPlays, map stage, task ")
        assert str(info.value).endswith(f"the connection to the dask scheduler {address} was lost")
    finally:
        for proc in (worker, scheduler):
            proc.terminate()
        for proc in (worker, scheduler):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mapreduce.cli", *args], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": ROOT, **(env or {})},
                          capture_output=True, text=True, timeout=TIMEOUT)


def test_cli_runs_on_the_cluster(cluster, client, plays, tmp_path):
    client.wait_for_workers(2, timeout=30)
    logs, expected = plays
    out = tmp_path / "out"
    proc = _cli("run", PLAYS, *logs, "--out", str(out), "--executor", "dask",
                "--scheduler", cluster.scheduler_address, "--reducers", "4",
                "--split-size", str(SPLIT), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert read(str(out / "song_plays.tsv")) == expected
    report = json.loads(read(str(out / "song_plays.tsv.report.json")))
    assert report["executor"] == "dask" and report["scheduler"] == cluster.scheduler_address


def test_cli_unreachable_scheduler_is_one_line(tmp_path, plays):
    logs, _ = plays
    proc = _cli("run", PLAYS, logs[0], "--out", str(tmp_path), "--executor", "dask",
                "--scheduler", "tcp://127.0.0.1:9", "--quiet",
                env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"})
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: cannot connect to the dask scheduler at "
                                  "tcp://127.0.0.1:9")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_cli_without_distributed_says_how_to_install(monkeypatch, capsys, plays, tmp_path):
    logs, _ = plays
    monkeypatch.setenv("DASK_LOGGING__DISTRIBUTED", "warning")  # main() sets it: undo after
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    monkeypatch.delitem(sys.modules, "mapreduce.dask_backend")
    code = cli.main(["run", PLAYS, logs[0], "--out", str(tmp_path), "--executor", "dask"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == ("error: the dask executor needs the distributed package: "
                   "pip install '.[dask]'\n")


@pytest.mark.parametrize("settings, address, says", [
    ({}, "tls://127.0.0.1:9", "is a TLS address, but no TLS settings were found"),
    ({"distributed.comm.require-encryption": True}, "tcp://127.0.0.1:9", "requires encryption"),
    ({"distributed.comm.tls.ca-file": "/nonexistent/ca.pem"}, "tls://127.0.0.1:9",
     "distributed.comm.tls.ca-file names /nonexistent/ca.pem"),
])
def test_tls_settings_checked_before_connecting(settings, address, says):
    """Without the check distributed fails deep in its connect code, with a traceback."""
    import dask

    with dask.config.set(settings):
        with pytest.raises(JobError, match=says) as info:
            DaskBackend(None, scheduler=address)
    assert "\n" not in str(info.value)
