"""The framework's own process pool, on the public ``multiprocessing`` API only.

Why not ``concurrent.futures.ProcessPoolExecutor``: it shares one result pipe among all workers,
so when a worker dies it cannot tell which task was lost and fails them all; and a worker killed
while writing its result leaves half a message in that shared pipe, which its manager thread then
waits on for ever. Seeing that sooner meant reaching into its private attributes.

Here every worker has a pipe of its own and holds at most one task, so the pool always knows
which task a worker runs::

    submit ──▶ pending ──▶ manager thread ──task──▶ worker 1 (own duplex pipe, own sentinel)
                               ▲    ▲     ──task──▶ worker 2 ...
                               │    └──── result or EOF, process sentinel
                               └── wakeup pipe (submit, shutdown, abort)

The manager waits on every worker's pipe and process sentinel at once. A worker that dies (a
SIGKILL, the OOM killer) fails exactly the future it held with :class:`WorkerDied` and is replaced
when there is work for it; the others and their tasks go on. Half a message from a dead worker is
read as end-of-file, since the worker held the only write end of its pipe. Workers end by
themselves when the parent dies: an idle one reads end-of-file on its pipe, a busy one is ended by
a thread watching the parent's sentinel.
"""
from __future__ import annotations

import atexit
import collections
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import traceback
import weakref
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Callable

log = logging.getLogger(__name__)

#: how long ``abort`` waits for the manager thread to confirm every worker is gone
ABORT_SECONDS = 10.0
#: how long a worker whose pipe broke may take to exit before it is killed
_REAP_SECONDS = 2.0


class WorkerDied(BrokenProcessPool):
    """The worker process running this task died (killed, or out of memory) before answering."""

    def __init__(self, pid: int | None, exitcode: int | None) -> None:
        self.pid = pid
        self.exitcode = exitcode
        super().__init__(f"worker process {pid} died running this task ({describe_exit(exitcode)})")

    def __reduce__(self) -> tuple[Any, ...]:
        return WorkerDied, (self.pid, self.exitcode)


class RemoteTraceback(Exception):
    """The worker's traceback, as text: chained as ``__cause__`` of a task's exception."""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(text)

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


class RemoteError(Exception):
    """Stands in for a worker's exception (or result) that could not cross the pipe whole."""

    def __init__(self, type_name: str, message: str) -> None:
        self.type_name = type_name
        self.message = message
        super().__init__(type_name, message)

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}"


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


@dataclass
class _Job:
    future: Future
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass
class _Worker:
    process: Any  # a multiprocessing Process of the pool's context
    conn: Connection
    job: _Job | None = None
    broken: bool = False  # its pipe failed: it is dead or dying
    pid: int | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.pid = self.process.pid


class ProcessPool(Executor):
    """At most ``max_workers`` worker processes, started as tasks come and kept between them."""

    def __init__(self, max_workers: int, *, context: Any = None,
                 initializer: Callable[..., Any] | None = None,
                 initargs: tuple[Any, ...] = ()) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self._context = context or multiprocessing.get_context("spawn")
        self._initializer = initializer
        self._initargs = initargs
        self._lock = threading.Lock()
        self._pending: collections.deque[_Job] = collections.deque()
        self._workers: list[_Worker] = []  # changed by the manager thread only
        self._shutdown = False
        self._abort: threading.Event | None = None  # set by the manager once an abort is done
        self._wake_r, self._wake_w = multiprocessing.Pipe(duplex=False)
        self._woken = False
        self._manager: threading.Thread | None = None
        self._started = 0
        _live_pools.add(self)

    # -- the Executor API ------------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._pending.append(_Job(future, fn, args, kwargs))
            self._start_manager()
            self._wake()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new tasks; the queued ones still run unless ``cancel_futures``; workers then exit."""
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while self._pending:
                    self._pending.popleft().future.cancel()
            manager = self._manager
            if manager is None:
                self._close_wakeup()
                return
            self._wake()
        if wait:
            manager.join()

    # -- beyond the Executor API -----------------------------------------------------------------
    def abort(self) -> None:
        """Kill every worker now; queued tasks are cancelled, running ones fail with
        BrokenProcessPool. The pool stays usable: the next task starts new workers."""
        done = threading.Event()
        with self._lock:
            while self._pending:
                self._pending.popleft().future.cancel()
            manager = self._manager
            if manager is None or not manager.is_alive():
                return
            self._abort = done
            self._wake()
        # killed from here too, not only by the manager: it may be busy reading a long result
        for worker in list(self._workers):
            _kill(worker.process)
        if not done.wait(ABORT_SECONDS):
            log.warning("the worker pool did not confirm the abort within %.0f s", ABORT_SECONDS)

    def pids(self) -> list[int]:
        """The process ids of the workers alive now (as far as the pool has noticed)."""
        return [w.pid for w in list(self._workers) if w.pid is not None]

    @property
    def closed(self) -> bool:
        return self._shutdown

    # -- the manager thread ----------------------------------------------------------------------
    def _start_manager(self) -> None:
        if self._manager is None or not self._manager.is_alive():
            # a daemon thread: it must never keep the interpreter from exiting; the atexit hook
            # below shuts the pool down in order first
            self._manager = threading.Thread(target=self._manage, name="process-pool-manager",
                                             daemon=True)
            self._manager.start()

    def _wake(self) -> None:
        """Called with the lock held; one wakeup in the pipe at a time, so it never fills."""
        if not self._woken:
            self._woken = True
            self._wake_w.send_bytes(b"")

    def _manage(self) -> None:
        try:
            while self._step():
                pass
        except BaseException as exc:  # a bug here must fail the futures, not leave them hanging
            log.error("the worker pool's manager thread failed: %r", exc)
            self._kill_all(BrokenProcessPool(f"the worker pool failed: {exc!r}"))
            with self._lock:
                while self._pending:
                    self._pending.popleft().future.set_exception(
                        BrokenProcessPool(f"the worker pool failed: {exc!r}"))
                self._manager = None
            raise

    def _step(self) -> bool:
        """One round: abort if asked, hand out tasks, wait for news. False once shut down."""
        with self._lock:
            while self._wake_r.poll():
                self._wake_r.recv_bytes()
            self._woken = False
            aborted, self._abort = self._abort, None
            finished = (self._shutdown and not self._pending
                        and all(w.job is None for w in self._workers))
        if aborted is not None:
            self._kill_all(BrokenProcessPool("the worker pool was aborted"))
            aborted.set()
        if finished:
            self._stop_workers()
            with self._lock:
                self._close_wakeup()
                self._manager = None
            return False
        self._dispatch()
        conns = {w.conn: w for w in self._workers}
        sentinels = {w.process.sentinel: w for w in self._workers}
        ready = wait([self._wake_r, *conns, *sentinels])
        if self._abort is not None:
            return True  # the workers were killed on purpose: the next round says so
        for obj in ready:
            if obj in conns:
                self._receive(conns[obj])
        for obj in ready:
            if obj in sentinels:
                sentinels[obj].broken = True
        for worker in [w for w in self._workers if w.broken]:
            self._bury(worker)
        return True

    def _dispatch(self) -> None:
        """Hand queued tasks to idle workers, starting workers up to ``max_workers``."""
        while True:
            idle = next((w for w in self._workers if w.job is None and not w.broken), None)
            if idle is None and len(self._workers) >= self.max_workers:
                return
            with self._lock:
                if not self._pending:
                    return
                job = self._pending.popleft()
            if not job.future.set_running_or_notify_cancel():
                continue  # cancelled while queued
            try:
                message = pickle.dumps((job.fn, job.args, job.kwargs), pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # noqa: BLE001 - the caller's task cannot be sent: its error
                job.future.set_exception(exc)
                continue
            if idle is None:
                try:
                    idle = self._start_worker()
                except OSError as exc:  # no process or file descriptor left
                    job.future.set_exception(exc)
                    continue
            idle.job = job
            try:
                idle.conn.send_bytes(message)
            except OSError:
                idle.broken = True  # it died; _bury fails the job with WorkerDied
                self._bury(idle)

    def _start_worker(self) -> _Worker:
        ours, theirs = self._context.Pipe(duplex=True)
        self._started += 1
        process = self._context.Process(
            target=_worker_main, args=(theirs, self._initializer, self._initargs),
            name=f"mapreduce-worker-{self._started}")
        try:
            process.start()
        except BaseException:
            ours.close()
            raise
        finally:
            # the worker must hold the only write end of its pipe: when it dies, we read EOF
            theirs.close()
        worker = _Worker(process, ours)
        self._workers.append(worker)
        return worker

    def _receive(self, worker: _Worker) -> None:
        try:
            data = worker.conn.recv_bytes()
        except (EOFError, OSError):  # dead; maybe half a message written before it
            worker.broken = True
            return
        job, worker.job = worker.job, None
        if job is None or job.future.done():
            return
        try:
            ok, value, tb = pickle.loads(data)
        except Exception as exc:  # noqa: BLE001 - e.g. an exception class that will not rebuild
            job.future.set_exception(RemoteError(
                type(exc).__name__, f"a worker's answer could not be unpickled: {exc}"))
            return
        if ok:
            job.future.set_result(value)
        else:
            value.__cause__ = RemoteTraceback(tb)
            job.future.set_exception(value)

    def _bury(self, worker: _Worker, reason: BaseException | None = None) -> None:
        """A dead (or dying) worker: reap it and fail the task it held."""
        process = worker.process
        process.join(_REAP_SECONDS)
        if process.exitcode is None:
            _kill(process)
            process.join()
        job, worker.job = worker.job, None
        if job is not None and not job.future.done():
            job.future.set_exception(reason or WorkerDied(worker.pid, process.exitcode))
        if reason is None:
            log.debug("worker process %s ended (%s)", worker.pid, describe_exit(process.exitcode))
        worker.conn.close()
        process.close()
        self._workers.remove(worker)

    def _kill_all(self, reason: BaseException) -> None:
        for worker in list(self._workers):
            _kill(worker.process)
        for worker in list(self._workers):
            self._bury(worker, reason)

    def _stop_workers(self) -> None:
        """Idle workers read end-of-file on their pipes and exit."""
        for worker in self._workers:
            worker.conn.close()
        for worker in self._workers:
            worker.process.join(_REAP_SECONDS)
            if worker.process.exitcode is None:
                _kill(worker.process)
                worker.process.join()
            worker.process.close()
        self._workers.clear()

    def _close_wakeup(self) -> None:
        self._wake_r.close()
        self._wake_w.close()


def _kill(process: Any) -> None:
    try:
        if process.exitcode is None:
            process.kill()
    except (OSError, ValueError):  # already reaped, or closed
        pass


_live_pools: weakref.WeakSet[ProcessPool] = weakref.WeakSet()


@atexit.register
def _shutdown_at_exit() -> None:
    # Before multiprocessing's own exit handler (registered earlier, so run later), which joins
    # every child: workers waiting for a task must be told there is none coming.
    for pool in list(_live_pools):
        try:
            pool.shutdown(wait=True, cancel_futures=True)
        except Exception:  # noqa: BLE001 - exiting anyway
            pass


# -- the worker process --------------------------------------------------------------------------
def _worker_main(conn: Connection, initializer: Callable[..., Any] | None,
                 initargs: tuple[Any, ...]) -> None:
    # Ctrl-C reaches the whole process group: the parent decides (it aborts the pool); a worker
    # interrupted mid-task would only add a traceback to the terminal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    if initializer is not None:
        initializer(*initargs)
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):  # the pool shut down, or the parent is gone
            _exit_now()
        answer = _run(message)
        del message
        try:
            conn.send_bytes(answer)
        except OSError:  # the parent is gone
            _exit_now()
        del answer


def _exit_now() -> None:
    """End an idle worker without the interpreter's teardown (about 0.3 s of freeing modules
    and heaps that the parent, joining its workers, would wait for). A task's files are
    closed when it answers; only buffered console output and log records are left."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os._exit(0)


def _run(message: bytes) -> bytes:
    """Run one task; its answer pickled: (True, result, None) or (False, exception, traceback)."""
    try:
        fn, args, kwargs = pickle.loads(message)
        value = fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
        return _pickled_error(exc)
    try:
        return pickle.dumps((True, value, None), pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001
        return _pickled_error(RemoteError(
            type(exc).__name__, f"the result of {getattr(fn, '__name__', fn)!r} could not be "
                                f"pickled: {exc}"))


def _pickled_error(exc: BaseException) -> bytes:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        data = pickle.dumps((False, exc, tb), pickle.HIGHEST_PROTOCOL)
        pickle.loads(data)  # an exception class whose __init__ cannot rebuild it fails here
        return data
    except Exception:  # noqa: BLE001 - a stand-in keeps the type name, message and traceback
        name = f"{type(exc).__module__}.{type(exc).__qualname__}"
        try:
            text = str(exc)
        except Exception:  # noqa: BLE001
            text = "(its message could not be formatted)"
        return pickle.dumps((False, RemoteError(name, text), tb), pickle.HIGHEST_PROTOCOL)


def _exit_with_parent() -> None:
    """End this worker when the process that started it is gone, even mid-task.

    An idle worker sees end-of-file on its pipe when the parent dies, but a busy one would run
    its task to the end first and then, with nobody to answer to, exit: a nightly job killed
    mid-run must not leave orphans computing for minutes. The parent's sentinel (public since
    Python 3.8) becomes ready when the parent exits, however it died.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)  # the documented way to leave at once, from a thread, skipping cleanup

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
