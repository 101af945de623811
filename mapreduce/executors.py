"""Where tasks run. The runner sees only ``concurrent.futures.Executor`` (``submit``), so one job
runs unchanged in the calling process, on the framework's own process pool (mapreduce.pool), or on
a Dask cluster.

A :class:`Backend` wraps one executor with what the runner needs around it: how many tasks run at
once, how to start over if the executor broke as a whole, and how to stop everything at once. A
task whose worker process died fails with ``BrokenProcessPool`` (the local pool's
:class:`~mapreduce.pool.WorkerDied`); the runner retries it.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Executor, Future
from typing import Any, Callable

import psutil

from mapreduce.pool import ProcessPool

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
        """Make the executor usable again if it broke as a whole (a pool that was shut down)."""

    def abort(self) -> None:
        """Stop now: cancel queued tasks and kill running ones."""

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
    """The framework's own process pool (mapreduce.pool) with an explicit start method.

    The pool replaces a dead worker itself and fails only the task that worker held, so there is
    nothing to renew after a death; ``abort`` kills the workers and leaves the pool usable, as a
    long-lived backend, the daemon's, needs after a failed run."""

    name = "local"

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.executor: ProcessPool = self._new_pool()

    def _new_pool(self) -> ProcessPool:
        return ProcessPool(self.workers, context=multiprocessing.get_context(START_METHOD))

    def renew(self) -> None:
        if self.executor.closed:
            self.executor = self._new_pool()

    def abort(self) -> None:
        # A running task cannot be cancelled through the Executor API; its process is killed so
        # that a failed run ends now rather than after its slowest task.
        self.executor.abort()


def make_backend(kind: str = "local", workers: int | None = None, *,
                 scheduler: str | None = None, quiet: bool = False) -> Backend:
    """``inline``, ``local`` (process pool) or ``dask`` (a cluster; see mapreduce.dask_backend).
    ``quiet``: a cluster's own warnings are not shown either."""
    if workers is not None and workers < 1:
        raise ValueError("workers must be at least 1")
    if kind == "inline":
        return Backend(1)
    if kind == "local":
        return LocalBackend(workers or default_workers())
    if kind == "dask":
        from mapreduce.dask_backend import DaskBackend

        return DaskBackend(workers, scheduler=scheduler, quiet=quiet)
    raise ValueError(f"unknown executor {kind!r}: choose one of {', '.join(EXECUTORS)}")
