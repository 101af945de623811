"""Where tasks run. The runner sees only ``concurrent.futures.Executor`` (``submit``), so one job
runs unchanged in the calling process, on a local process pool, or on a Dask cluster.

A :class:`Backend` wraps one executor with what the runner needs around it: how many tasks run at
once, how to start over after a worker process died, and how to stop everything at once.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, Callable

import psutil

log = logging.getLogger(__name__)

EXECUTORS = ("inline", "local", "dask")
#: spawn: a clean interpreter per worker, the same on Linux and macOS, and no inherited locks or
#: threads (the progress and memory-sampling threads) that fork would copy mid-state.
START_METHOD = "spawn"


def default_workers() -> int:
    """Physical cores (hyper-threads share the arithmetic units this work saturates)."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


class InlineExecutor(Executor):
    """Runs each task at ``submit``, in the calling process: tracebacks stay plain, pdb works."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            future.set_exception(exc)
        return future


class Backend:
    """An executor plus its lifecycle. ``workers`` is how many tasks may usefully run at once."""

    name = "inline"

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self.executor: Executor = InlineExecutor()

    def renew(self) -> None:
        """Start over after the executor broke (a worker process died)."""

    def abort(self) -> None:
        """Stop now: cancel queued tasks and kill running ones."""

    def dead_workers(self) -> bool:
        """Whether a worker process is known dead (only a process pool can tell)."""
        return False

    def explain(self, exc: BaseException) -> str:
        """One line saying why a task failed; a backend knows its own executor's errors best."""
        return f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        self.executor.shutdown(wait=True)

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "workers": self.workers}

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalBackend(Backend):
    """A ``ProcessPoolExecutor`` with an explicit start method."""

    name = "local"

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._context = multiprocessing.get_context(START_METHOD)
        self.executor = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=self._context,
                                   initializer=_exit_with_parent, initargs=(os.getpid(),))

    def renew(self) -> None:
        self.abort()

    def dead_workers(self) -> bool:
        procs = getattr(self.executor, "_processes", None) or {}
        return any(p.exitcode is not None for p in list(procs.values()))

    def abort(self) -> None:
        """Kill the pool's processes and put a fresh pool in its place (workers start lazily),
        so a long-lived backend, the daemon's, stays usable after a failed run."""
        pool = self.executor
        assert isinstance(pool, ProcessPoolExecutor)
        # A running task cannot be cancelled through the Executor API; its process is killed so
        # that a failed run ends now rather than after its slowest task.
        procs = list((getattr(pool, "_processes", None) or {}).values())
        results = getattr(pool, "_result_queue", None)  # shutdown() forgets it
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            try:
                if proc.is_alive():
                    proc.kill()
            except (OSError, ValueError):
                pass
        for proc in procs:
            try:
                proc.join(timeout=5)
            except (OSError, ValueError, AssertionError):
                pass
        # A worker killed while sending its result leaves half a message in the result pipe,
        # and the pool's manager thread waits for the rest for ever: a non-daemon thread that
        # would keep this process from ever exiting. With every worker dead, ours is the last
        # write end of that pipe; closing it gives the thread an end-of-file and lets it finish.
        writer = getattr(results, "_writer", None)
        if writer is not None:
            try:
                writer.close()
            except OSError:
                pass
        self.executor = self._new_pool()


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: end this worker when the process that started it is gone.

    A pool's workers hold both ends of their task queue's pipe, so a parent killed with
    SIGKILL never closes it for them: they would wait for work forever, orphans that a nightly
    job run unattended would pile up. A thread watching the parent's pid ends them instead.
    """
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def make_backend(kind: str = "local", workers: int | None = None, *,
                 scheduler: str | None = None) -> Backend:
    """``inline``, ``local`` (process pool) or ``dask`` (a cluster; see mapreduce.dask_backend)."""
    if workers is not None and workers < 1:
        raise ValueError("workers must be at least 1")
    if kind == "inline":
        return Backend(1)
    if kind == "local":
        return LocalBackend(workers or default_workers())
    if kind == "dask":
        from mapreduce.dask_backend import DaskBackend

        return DaskBackend(workers, scheduler=scheduler)
    raise ValueError(f"unknown executor {kind!r}: choose one of {', '.join(EXECUTORS)}")
