"""The framework's own process pool (mapreduce.pool), with real worker processes.

Every wait has a timeout: a regression that hangs fails the test instead of blocking the suite.
The task functions are top-level here, so the spawned workers import them by name."""
from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import CancelledError
from concurrent.futures.process import BrokenProcessPool

import psutil
import pytest

from mapreduce.errors import JobError
from mapreduce.executors import make_backend
from mapreduce.pool import ProcessPool, RemoteError, RemoteTraceback, WorkerDied
from mapreduce.runner import run_stage
from mapreduce.trace import Trace, worker_name
from tests.mapreduce.jobs_for_tests import write_half_a_message_and_die

T = 60  # seconds any one result may take before the test calls it a hang


# -- task functions (run in the workers) -----------------------------------------------------------
def add(a: int, b: int = 0) -> int:
    return a + b


def raise_value_error(text: str) -> None:
    raise ValueError(text)  # the line test_exception_has_the_workers_traceback looks for


class Unpicklable(Exception):
    def __init__(self, a: int, b: int) -> None:  # pickle rebuilds it with one argument: fails
        super().__init__(f"{a}/{b}")


def raise_unpicklable() -> None:
    raise Unpicklable(1, 2)


def return_unpicklable() -> object:
    return threading.Lock()


def pid_then_sleep(path: str, seconds: float) -> int:
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(seconds)
    return os.getpid()


def die_mid_result() -> None:
    write_half_a_message_and_die()


def big_result(n: int) -> bytes:
    return b"x" * n


def die_on_first_run(task: tuple[int, str]) -> int:
    value, marker = task
    if value == 1 and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return value * 2


def fail_on_two(value: int) -> int:
    if value == 2:
        raise KeyError("two")
    return value


def _wait_for_pid(path: str) -> int:
    deadline = time.monotonic() + T
    while not os.path.exists(path):
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.01)
    with open(path) as f:
        return int(f.read())


@pytest.fixture
def pool():
    p = ProcessPool(2)
    yield p
    p.shutdown(wait=True, cancel_futures=True)


# -- results and errors ----------------------------------------------------------------------------
def test_results_in_order_with_args_and_kwargs(pool):
    futures = [pool.submit(add, i, b=100) for i in range(20)]
    assert [f.result(T) for f in futures] == [i + 100 for i in range(20)]
    assert 1 <= len(pool.pids()) <= 2 and os.getpid() not in pool.pids()


def test_exception_has_the_workers_traceback(pool):
    exc = pool.submit(raise_value_error, "no good").exception(T)
    assert isinstance(exc, ValueError) and str(exc) == "no good"
    cause = exc.__cause__
    assert isinstance(cause, RemoteTraceback)
    line = next(n for n, text in enumerate(open(__file__), 1) if "raise ValueError(text)" in text)
    assert f'test_pool.py", line {line}, in raise_value_error' in cause.text
    assert "ValueError: no good" in cause.text


def test_unpicklable_exception_and_result_come_back_as_stand_ins():
    pool = ProcessPool(1)
    try:
        worker = pool.submit(os.getpid).result(T)
        exc = pool.submit(raise_unpicklable).exception(T)
        assert isinstance(exc, RemoteError)
        assert exc.type_name == "tests.mapreduce.test_pool.Unpicklable" and exc.message == "1/2"
        assert "in raise_unpicklable" in exc.__cause__.text
        exc = pool.submit(return_unpicklable).exception(T)
        assert isinstance(exc, RemoteError) and "could not be pickled" in str(exc)
        # neither killed the worker
        assert pool.submit(os.getpid).result(T) == worker and pool.pids() == [worker]
    finally:
        pool.shutdown()


def test_unpicklable_task_fails_its_future_only(pool):
    assert isinstance(pool.submit(add, threading.Lock()).exception(T), TypeError)
    assert pool.submit(add, 2, 2).result(T) == 4


def test_large_result(pool):
    assert len(pool.submit(big_result, 64 << 20).result(T)) == 64 << 20


# -- dead workers ----------------------------------------------------------------------------------
def test_worker_killed_mid_task_fails_only_its_future(pool, tmp_path):
    marker = str(tmp_path / "pid")
    doomed = pool.submit(pid_then_sleep, marker, 60)
    victim = _wait_for_pid(marker)
    other = pool.submit(pid_then_sleep, str(tmp_path / "other"), 0.5)
    os.kill(victim, signal.SIGKILL)
    exc = doomed.exception(T)
    assert isinstance(exc, WorkerDied) and isinstance(exc, BrokenProcessPool)
    assert exc.pid == victim and exc.exitcode == -signal.SIGKILL
    assert f"worker process {victim} died" in str(exc) and "SIGKILL" in str(exc)
    assert other.result(T) != victim  # the other worker's task was untouched
    # the dead worker is replaced when there is work: the pool carries on with two workers
    assert [pool.submit(add, i).result(T) for i in range(4)] == [0, 1, 2, 3]
    assert victim not in pool.pids()


def test_worker_killed_while_sending_its_result_does_not_hang(pool):
    """Half a message in a dead worker's pipe reads as end-of-file: that task fails, no hang."""
    exc = pool.submit(die_mid_result).exception(T)
    assert isinstance(exc, WorkerDied) and exc.exitcode == -signal.SIGKILL
    assert pool.submit(add, 5, 5).result(T) == 10


def test_worker_dead_while_idle_is_replaced_without_failing_anything(pool):
    first = pool.submit(os.getpid).result(T)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + T
    while first in pool.pids():  # the pool notices the death by itself
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert [pool.submit(add, i).result(T) for i in range(3)] == [0, 1, 2]


# -- abort and shutdown ----------------------------------------------------------------------------
def test_abort_kills_workers_fails_running_cancels_queued_and_pool_stays_usable(tmp_path):
    pool = ProcessPool(1)
    try:
        running = pool.submit(pid_then_sleep, str(tmp_path / "pid"), 60)
        worker = _wait_for_pid(str(tmp_path / "pid"))
        queued = pool.submit(add, 1)
        started = time.monotonic()
        pool.abort()
        assert time.monotonic() - started < 10
        assert not psutil.pid_exists(worker) or psutil.Process(worker).status() == "zombie"
        assert isinstance(running.exception(T), BrokenProcessPool)
        with pytest.raises(CancelledError):
            queued.result(T)
        assert pool.pids() == []
        assert pool.submit(os.getpid).result(T) != worker
    finally:
        pool.shutdown()


def test_shutdown_runs_queued_tasks_then_workers_exit():
    pool = ProcessPool(2)
    futures = [pool.submit(add, i) for i in range(6)]
    workers = [psutil.Process(pid) for pid in pool.pids()]
    pool.shutdown(wait=True)
    assert [f.result(0) for f in futures] == list(range(6))
    gone, alive = psutil.wait_procs(workers, timeout=T)
    assert alive == [] and pool.pids() == []
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(add, 1)


def test_shutdown_can_cancel_queued_tasks(tmp_path):
    pool = ProcessPool(1)
    running = pool.submit(pid_then_sleep, str(tmp_path / "pid"), 0.5)
    _wait_for_pid(str(tmp_path / "pid"))
    queued = [pool.submit(add, i) for i in range(3)]
    pool.shutdown(wait=True, cancel_futures=True)
    assert running.result(0) > 0
    assert all(f.cancelled() for f in queued)


# -- the runner's trace on the pool ----------------------------------------------------------------
def test_trace_has_one_event_per_attempt_with_the_dead_one(tmp_path, caplog):
    marker = str(tmp_path / "killed")
    trace = Trace()
    tasks = [(v, marker) for v in range(4)]
    with make_backend("local", 2) as backend:
        results = run_stage(backend, "double", tasks, die_on_first_run,
                            where=lambda t: f"value {t[0]}", trace=trace)
    assert results == [0, 2, 4, 6]
    assert "double task 1: worker process died; retrying (attempt 2 of 3" in caplog.text
    events = trace.events
    assert len(events) == 5
    dead = [e for e in events if e.outcome == "worker died"]
    assert len(dead) == 1 and dead[0].task == 1 and dead[0].attempt == 1
    assert dead[0].label == "value 1" and dead[0].end >= dead[0].start
    host, pid = dead[0].worker.split(":")
    assert host == os.uname().nodename and not psutil.pid_exists(int(pid))
    ok = [e for e in events if e.outcome == "ok"]
    assert sorted(e.task for e in ok) == [0, 1, 2, 3]
    assert [e.attempt for e in ok if e.task == 1] == [2]
    me = worker_name()
    assert all(e.worker != me and e.stage == "double" and e.start <= e.end for e in ok)
    assert dead[0].worker not in {e.worker for e in ok if e.task == 1}
    rows = trace.to_json()
    assert rows[0].keys() == {"stage", "task", "label", "worker", "start", "end", "attempt",
                              "outcome"}


def test_trace_records_a_failed_task_with_its_workers_timing():
    trace = Trace()
    with make_backend("local", 2) as backend:
        with pytest.raises(JobError, match="KeyError"):
            run_stage(backend, "s", [0, 1, 2, 3], fail_on_two, trace=trace)
    failed = [e for e in trace.events if e.outcome == "failed"]
    assert len(failed) == 1 and failed[0].task == 2
    host, pid = failed[0].worker.split(":")
    assert host == os.uname().nodename and int(pid) != os.getpid()


def test_trace_inline_names_this_process():
    trace = Trace()
    with make_backend("inline") as backend:
        assert run_stage(backend, "s", [1, 2], abs, trace=trace) == [1, 2]
    assert [(e.task, e.worker, e.outcome) for e in trace.events] == \
        [(0, worker_name(), "ok"), (1, worker_name(), "ok")]
