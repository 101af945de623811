from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
import pytest

from mapreduce.executors import InlineExecutor, make_backend

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_PARENT = """
import os, sys
from mapreduce.executors import make_backend
backend = make_backend("local", 2)
pids = {backend.executor.submit(os.getpid).result() for _ in range(20)}
print(" ".join(map(str, pids)), flush=True)
sys.stdin.read()   # wait to be killed
"""


_BUSY_PARENT = """
import os, sys, time
from mapreduce.executors import make_backend
backend = make_backend("local", 2)
pids = {backend.executor.submit(os.getpid).result() for _ in range(20)}
busy = [backend.executor.submit(time.sleep, 600) for _ in range(2)]
time.sleep(0.5)  # both workers are in their task now
print(" ".join(map(str, pids)), flush=True)
sys.stdin.read()   # wait to be killed
"""


@pytest.mark.parametrize("script", [_PARENT, _BUSY_PARENT], ids=["idle", "busy"])
def test_workers_end_when_their_parent_is_sigkilled(script):
    """Idle workers read end-of-file on their pipes; busy ones are ended by their watch of the
    parent's sentinel, not after their ten-minute task."""
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": ROOT})
    try:
        workers = [psutil.Process(int(p)) for p in parent.stdout.readline().split()]
        assert workers and all(w.is_running() for w in workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert alive == [], f"orphaned workers still running: {[p.pid for p in alive]}"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_inline_executor_runs_at_submit_and_keeps_exceptions():
    ex = InlineExecutor()
    assert ex.submit(pow, 2, 10).result() == 1024
    assert isinstance(ex.submit(int, "x").exception(), ValueError)


def test_aborted_local_backend_is_usable_again():
    with make_backend("local", 1) as backend:
        first = backend.executor.submit(os.getpid).result()
        backend.abort()
        assert not psutil.pid_exists(first) or psutil.Process(first).status() == "zombie"
        assert backend.executor.submit(os.getpid).result() != first


def test_local_backend_renew_replaces_only_a_closed_pool():
    backend = make_backend("local", 1)
    pool = backend.executor
    backend.renew()  # the pool replaces dead workers itself: nothing to renew
    assert backend.executor is pool
    backend.close()
    backend.renew()
    assert backend.executor is not pool and backend.executor.submit(pow, 3, 2).result() == 9
    backend.close()
