"""Run the same jobs on a Dask distributed cluster.

The runner only calls ``executor.submit``; distributed's ``Client.get_executor`` gives exactly that,
returning plain ``concurrent.futures.Future`` objects. What travels to a worker is the task spec
(paths and byte ranges) and what comes back is a small result: the data stays in files, so every
worker must see the logs, the store and the output folder under the same path (a shared file
system).

Lost workers are dealt with by the scheduler, not by the runner: a task that was running on a
worker that died is rescheduled on another one, and only when that happened more than
``distributed.scheduler.allowed-failures`` times (3 by default) does its future fail with
``KilledWorker``, which :meth:`DaskBackend.explain` turns into a one-line reason.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import CancelledError
from typing import Any

try:
    from distributed import Client, KilledWorker, LocalCluster
    from distributed.security import Security
except ImportError as exc:  # the extra is optional; the CLI prints this as one line, exit 2
    raise ImportError("the dask executor needs the distributed package: "
                      "pip install '.[dask]'") from exc

from mapreduce.errors import JobError
from mapreduce.executors import Backend, default_workers

log = logging.getLogger(__name__)

#: how long to wait for a first worker to join an existing scheduler before giving up
WORKER_WAIT_SECONDS = 60.0
#: how long ``abort`` may spend telling the scheduler to cancel; it must never hang a failing run
ABORT_SECONDS = 10.0
#: how often ``workers`` asks the scheduler again (a cluster can grow or lose nodes during a run)
REFRESH_SECONDS = 2.0


class DaskBackend(Backend):
    """Tasks on a Dask cluster: an existing one at ``scheduler``, or a local one for this run."""

    name = "dask"
    # dask reschedules a dead worker's tasks itself; the runner never sees BrokenProcessPool

    def __init__(self, workers: int | None, *, scheduler: str | None,
                 quiet: bool = False) -> None:
        if quiet:
            quiet_distributed()
        self.scheduler = scheduler
        self._cluster: LocalCluster | None = None
        self._threads = 0
        self._checked = 0.0
        if scheduler:
            security = _client_security(scheduler)
            try:
                self._client = Client(scheduler, security=security, set_as_default=False)
            except OSError as exc:  # refused, unreachable, timed out, TLS handshake refused
                raise JobError(f"cannot connect to the dask scheduler at {scheduler}: "
                               f"{_one_line(exc)}") from None
            try:
                # a scheduler that was just started may not have workers yet; better to wait a
                # little than to run every task through one slot, or fail on an empty cluster
                self._client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
            except TimeoutError:
                self._client.close()
                raise JobError(f"no dask worker joined the scheduler at {scheduler} within "
                               f"{WORKER_WAIT_SECONDS:.0f} s; start some with "
                               f"`dask worker {scheduler}`") from None
            if workers is not None:
                log.warning("--workers %d is ignored with a scheduler: its cluster's workers "
                            "decide (%d threads now)", workers, self.workers_now())
        else:
            # Processes, not threads: the map code is pure Python in places and holds the GIL.
            # One thread per process so that one task uses one core, as with the local backend.
            # 127.0.0.1 and no dashboard: a throwaway cluster must not listen on the network.
            # The scheduler serves its health and metrics routes even without a dashboard, on
            # 8787 unless told otherwise: a free loopback port avoids a "port in use" warning
            # whenever a second cluster runs on the machine.
            try:
                self._cluster = LocalCluster(n_workers=workers or default_workers(),
                                             threads_per_worker=1, processes=True,
                                             host="127.0.0.1", dashboard_address=None,
                                             scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
            except (RuntimeError, OSError) as exc:  # e.g. a worker process failed to start
                raise JobError(f"could not start a local dask cluster: {_one_line(exc)}"
                               f"{_cause(exc)}") from None
            self._client = Client(self._cluster, set_as_default=False)
        self.executor = self._new_executor()

    def _new_executor(self) -> Any:
        # pure=False: a task writes files, so two equal specs are two runs, never one cached
        # result. retries=2: the scheduler reruns a task whose function *raised* (an NFS hiccup,
        # say) up to twice more; a dead worker is not a raise and is covered by allowed-failures.
        return self._client.get_executor(pure=False, retries=2)

    @property
    def workers(self) -> int:  # type: ignore[override]  # a live figure, not a constructor value
        """Worker threads in the cluster now: the runner keeps at most this many tasks in flight.

        Asked again at most every REFRESH_SECONDS (the runner reads it after every task)."""
        if time.monotonic() - self._checked > REFRESH_SECONDS:
            self.workers_now()
        return max(1, self._threads)

    def workers_now(self) -> int:
        try:
            self._threads = int(self._client.scheduler_info(n_workers=0)["total_threads"])
        except (OSError, KeyError, TypeError, ValueError):
            pass  # scheduler briefly unreachable: keep the last figure
        self._checked = time.monotonic()
        return self._threads

    def worker_addresses(self) -> list[str]:
        try:
            return sorted(self._client.scheduler_info()["workers"])
        except (OSError, KeyError):
            return []

    def explain(self, exc: BaseException) -> str:
        if isinstance(exc, KilledWorker):
            return (f"a worker process died running this task {exc.allowed_failures + 1} times "
                    f"(killed, or out of memory; last on {_address(exc.last_worker)}); dask gave "
                    f"up (KilledWorker, distributed.scheduler.allowed-failures="
                    f"{exc.allowed_failures})")
        if isinstance(exc, CancelledError):
            # the client cancels every future when it loses the scheduler connection
            return (f"task cancelled: the connection to the dask scheduler "
                    f"{self.scheduler or 'of the local cluster'} was lost")
        return super().explain(exc)

    def abort(self) -> None:
        """Cancel every task not yet finished; a running one ends on its worker unobserved."""
        old = self.executor
        # A fresh executor keeps the backend usable: a window job that finds a damaged store
        # table reduces that day again on the same backend after a failed stage.
        self.executor = self._new_executor()
        # shutdown(wait=False) cancels the old executor's futures; it is a round trip to the
        # scheduler, so a scheduler that is gone must not hold up a run that is already failing.
        t = threading.Thread(target=_quietly, args=(old.shutdown, False), daemon=True,
                             name="dask-abort")
        t.start()
        t.join(ABORT_SECONDS)
        if t.is_alive():
            log.warning("could not reach the dask scheduler to cancel tasks within %.0f s",
                        ABORT_SECONDS)

    def close(self) -> None:
        # A client that lost its scheduler is busy reconnecting; closing it cancels that, which
        # distributed logs as an error with a traceback: noise around the run's one-line error.
        lost = self._client.status not in ("running", "closed")
        client_log = logging.getLogger("distributed.client")
        level = client_log.level
        if lost:
            client_log.setLevel(logging.CRITICAL)
        try:
            self.executor.shutdown(wait=False)  # a normal run has nothing left to cancel
            self._client.close()
        finally:
            client_log.setLevel(level)
            if self._cluster is not None:
                self._cluster.close()
                self._cluster = None

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "workers": self.workers,
                "scheduler": self._client.scheduler.address if self._client.scheduler else None,
                "worker_addresses": self.worker_addresses()}


def _client_security(scheduler: str) -> Security:
    """This client's TLS settings, from dask's configuration (``distributed.comm.tls.*``).

    Checked before connecting: a ``tls://`` address without them makes distributed fail deep in
    its connect code with a TypeError, and leave a half-built client that logs a traceback later.
    """
    try:
        security = Security()
        named = (("ca-file", security.tls_ca_file), ("client.cert", security.tls_client_cert),
                 ("client.key", security.tls_client_key))
        for key, path in named:
            # distributed takes a value with a newline in it as the PEM text itself
            if path and "\n" not in path and not os.path.isfile(path):
                raise JobError(f"dask TLS settings: distributed.comm.tls.{key} names {path}, "
                               "which is not a readable file")
        tls_context = security.get_connection_args("client")["ssl_context"]
    except (OSError, ValueError) as exc:  # a named file missing or not PEM
        raise JobError(f"dask TLS settings: {_one_line(exc)}") from None
    tls = scheduler.startswith("tls://")
    if security.require_encryption and not tls:
        raise JobError(f"the dask configuration requires encryption "
                       f"(distributed.comm.require-encryption), but {scheduler} is not a "
                       "tls:// address")
    if tls and tls_context is None:
        raise JobError(f"{scheduler} is a TLS address, but no TLS settings were found: set "
                       "distributed.comm.tls.ca-file, .client.cert and .client.key in the dask "
                       "configuration (see docs/dask.md in the project)")
    return security


def quiet_distributed() -> None:
    """``--quiet``: distributed's own warnings ("Couldn't gather 1 keys, rescheduling",
    "Restarting worker") are its business, handled by its retries; only errors show, ours
    (``mapreduce.*``, ``jobs.*``) untouched.

    Its import gave some of its loggers levels of their own (``distributed.client`` at WARNING
    whatever DASK_LOGGING__DISTRIBUTED says), so each is raised, not only the parent; worker
    processes a local cluster starts from here on read the environment variable at import."""
    os.environ["DASK_LOGGING__DISTRIBUTED"] = "error"
    names = [n for n in list(logging.root.manager.loggerDict) if n.startswith("distributed.")]
    for name in ["distributed", *names]:
        logger = logging.getLogger(name)
        if name == "distributed" or logging.NOTSET < logger.level < logging.ERROR:
            logger.setLevel(logging.ERROR)


def _quietly(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - best effort while a run is failing anyway
        log.debug("cancelling dask tasks failed: %s", exc)


def _address(worker: Any) -> str:
    return getattr(worker, "address", None) or str(worker)


def _cause(exc: BaseException) -> str:
    return f" ({_one_line(exc.__cause__)})" if exc.__cause__ else ""


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror or exc}: {exc.filename}"
    return " ".join(str(exc).split()) or type(exc).__name__
