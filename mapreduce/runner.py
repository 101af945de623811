"""The runner: one MapReduce run from input files to committed output.

    input files ──plan_splits──▶ Split(path, start, end) × M
         │
         ▼  map stage: run_map(MapTask) on the backend's executor, M tasks
    scratch/map*.p{r}.*   (each task combines in memory, spills sorted runs per partition r)
         │
         ▼  reduce stage: run_reduce(ReduceTask), one task per (channel, partition)
    scratch/reduce-*      (every map task's runs of partition r merged and reduced)
         │
         ▼  commit (this process)
    output file / folder, renamed into place; report JSON beside it; scratch removed

Everything under scratch is removed whatever happens; the output appears only complete.
A task that raises fails the run at once with a JobError naming stage, task and split, the
worker's exception chained as ``__cause__``; the rest are cancelled. A worker process that dies
fails the one task it held, which is run again, up to ``retries`` times (a worker that died
holding no task costs no attempt: the pool replaces it). An input that changed while the map read
it fails the run. Every task attempt is timed in its worker and can be kept in a Trace (the
report's ``tasks``).
"""
from __future__ import annotations

import heapq
import logging
import os
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

from tqdm import tqdm

from mapreduce import codec
from mapreduce.errors import JobError
from mapreduce.executors import Backend
from mapreduce.fsutil import atomic_writer, make_temp_dir, replace_dir
from mapreduce.job import ArrayJob, JobSpec, load_job, resolve_ref
from mapreduce.pool import WorkerDied
from mapreduce.report import MemorySampler, StageClock, write_report
from mapreduce.splits import DEFAULT_BLOCK_SIZE, DEFAULT_SPLIT_SIZE, plan_splits
from mapreduce.tasks import MapResult, MapTask, ReduceResult, ReduceTask, run_map, run_reduce
from mapreduce.trace import (FAILED, OK, WORKER_DIED, TaskEvent, Timed, TimedResult, Timing, Trace,
                             timing_of, worker_name)

log = logging.getLogger(__name__)

DEFAULT_REDUCERS = 8
DEFAULT_RETRIES = 2
DEFAULT_MEMORY_BUDGET = 128 * 1024 * 1024
_POLL_SECONDS = 1.0  # how often the in-flight limit is read again (a Dask cluster can grow)


def show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def run_stage(backend: Backend, stage: str, tasks: Sequence[Any], fn: Callable[[Any], Any], *,
              where: Callable[[Any], str | None] = lambda task: None,
              weight: Callable[[Any], int] = lambda task: 1, unit: str = "task",
              quiet: bool = True, retries: int = DEFAULT_RETRIES,
              trace: Trace | None = None) -> list[Any]:
    """Run ``fn(task)`` for every task on the backend; results in task order.

    At most ``backend.workers`` tasks are in flight. A task whose worker process died
    (``BrokenProcessPool``; the local pool fails only the dead worker's task) is run again, at
    most ``retries`` times. ``trace``, if given, gets one event per task attempt.
    """
    results: list[Any] = [None] * len(tasks)
    attempts = [0] * len(tasks)  # attempts that ended with a dead worker
    queue = list(range(len(tasks)))[::-1]
    running: dict[Future, tuple[int, float]] = {}  # future -> (task, submitted at)
    call = Timed(fn)
    bar = tqdm(total=sum(weight(t) for t in tasks), desc=stage, unit=unit,
               unit_scale=unit == "B", disable=not show_progress(quiet), leave=False)

    def record(i: int, timing: Timing | None, submitted: float, worker: str | None,
               outcome: str) -> None:
        if trace is None:
            return
        # nobody measured a dead worker's attempt: from its submission to now, seen from here
        start, end = (timing.start, timing.end) if timing else (submitted, time.time())
        trace.add(TaskEvent(stage, i, where(tasks[i]), timing.worker if timing else worker,
                            start, end, attempts[i] + 1, outcome))

    try:
        while queue or running:
            while queue and len(running) < max(1, backend.workers):
                i = queue.pop()
                task = tasks[i]
                if attempts[i] and hasattr(task, "attempt"):
                    task = replace(task, attempt=attempts[i])
                running[backend.executor.submit(call, task)] = (i, time.time())
            done, _ = wait(list(running), timeout=_POLL_SECONDS, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                i, submitted = running.pop(future)
                try:
                    timed: TimedResult = future.result()
                except BrokenProcessPool as exc:
                    pid = exc.pid if isinstance(exc, WorkerDied) else None
                    record(i, None, submitted, pid and worker_name(pid), WORKER_DIED)
                    broken = broken or not isinstance(exc, WorkerDied)
                    attempts[i] += 1
                    if attempts[i] > retries:
                        raise JobError(f"a worker process died running this task "
                                       f"{attempts[i]} times (killed, or out of memory); giving up",
                                       stage=stage, task=i, split=where(tasks[i])) from exc
                    log.warning("%s task %d: worker process died; retrying (attempt %d of %d; %s)",
                                stage, i, attempts[i] + 1, retries + 1, exc)
                    queue.append(i)
                except Exception as exc:
                    record(i, timing_of(exc), submitted, None, FAILED)
                    raise JobError(backend.explain(exc), stage=stage, task=i,
                                   split=where(tasks[i])) from exc
                else:
                    record(i, timed.timing, submitted, timed.worker, OK)
                    results[i] = timed.value
                    bar.update(weight(tasks[i]))
            if broken:
                # An executor that breaks as a whole (not ours: it fails only the dead worker's
                # task) fails every task it held; each is charged above as its future reports.
                backend.renew()
    except BaseException:
        backend.abort()  # cancel what is queued, kill what runs: fail fast
        raise
    finally:
        bar.close()
    return results


@dataclass
class RunResult:
    output: str
    report: dict[str, Any]
    map_results: list[MapResult]
    reduce_results: list[ReduceResult]


def run_job(job_ref: str | JobSpec, inputs: Sequence[str], output: str, backend: Backend, *,
            reducers: int = DEFAULT_REDUCERS, split_size: int = DEFAULT_SPLIT_SIZE,
            block_size: int = DEFAULT_BLOCK_SIZE, memory_budget: int = DEFAULT_MEMORY_BUDGET,
            retries: int = DEFAULT_RETRIES, quiet: bool = True,
            report_path: str | None = None, trace: Trace | None = None,
            html_report: str | None = None) -> RunResult:
    """Run a job over ``inputs``; ``output`` is a file (record job) or a folder (array job).

    ``report_path`` defaults to ``<output>.report.json``. A job given as a string is built with
    its options' defaults; a :class:`JobSpec` carries parameters. Every task attempt goes into
    ``trace`` (a new one if not given) and into the report's ``tasks``; ``html_report`` is a
    page of them, with memory over time and the inputs' lines (mapreduce.html_report).
    """
    if not isinstance(job_ref, JobSpec):
        job_ref = JobSpec(resolve_ref(job_ref))
    trace = Trace() if trace is None else trace
    job = load_job(job_ref)
    is_arrays = isinstance(job, ArrayJob)
    inputs = [os.path.abspath(p) for p in inputs]
    output = os.path.abspath(output)
    out_dir = os.path.dirname(output)
    os.makedirs(out_dir, exist_ok=True)
    clock = StageClock()
    started = time.time()
    scratch = make_temp_dir(out_dir, os.path.basename(output))
    try:
        with MemorySampler() as memory:
            seen = {path: _file_state(path) for path in inputs}
            splits = plan_splits(inputs, split_size, max(1, backend.workers))
            map_tasks = [MapTask(job_ref, i, s, reducers, scratch, memory_budget, block_size)
                         for i, s in enumerate(splits)]
            with clock.stage("map"):
                map_results = run_stage(backend, "map", map_tasks, run_map,
                                        where=lambda t: str(t.split),
                                        weight=lambda t: t.split.length, unit="B",
                                        quiet=quiet, retries=retries, trace=trace)
            _check_unchanged(seen)
            reduce_tasks = _reduce_tasks(job_ref, map_results, scratch, is_arrays)
            with clock.stage("reduce"):
                reduce_results = run_stage(backend, "reduce", reduce_tasks, run_reduce,
                                           where=lambda t: f"partition {t.partition}",
                                           unit="partition", quiet=quiet, retries=retries,
                                           trace=trace)
            with clock.stage("commit"):
                if is_arrays:
                    _commit_tables(reduce_results, scratch, output)
                else:
                    _commit_records(reduce_results, output)
        report = _report(job, inputs, output, backend, map_results, reduce_results, clock,
                         memory.peak, started, reducers, split_size, trace)
        write_report(report_path or output + ".report.json", report)
        if html_report:
            _write_html(html_report, job_ref, report, map_tasks, map_results, memory.samples,
                        started, trace, memory_budget * max(1, backend.workers))
        return RunResult(output, report, map_results, reduce_results)
    except JobError as exc:
        exc.job = exc.job or job_ref.label  # the author's first question: which job failed
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _write_html(path: str, spec: JobSpec, report: dict[str, Any], map_tasks: list[MapTask],
                map_results: list[MapResult], memory: list[tuple[float, int]], started: float,
                trace: Trace, budget: int) -> None:
    from mapreduce.html_report import run_for_report, write_report_html

    per_input: dict[str, dict[str, Any]] = {}
    for task, result in zip(map_tasks, map_results):
        row = per_input.setdefault(task.split.path, {
            "day": os.path.basename(task.split.path), "lines": 0, "corrupt_lines": 0,
            "corrupt_by_kind": None, "seconds": 0.0, "cached": False, "samples": []})
        row["lines"] += result.lines
        row["corrupt_lines"] += result.counters.get("corrupt_lines", 0)
        row["seconds"] = round(row["seconds"] + result.seconds, 4)
        row["samples"] += [s for s in result.samples if isinstance(s, dict) and "offset" in s]
    write_report_html(path, run_for_report(
        title=f"{spec.label} over {len(per_input)} input(s)", params=report["params"],
        describe={"executor": report.get("executor"), "workers": report.get("workers")},
        started=started, wall=report["wall_seconds"], trace=trace.to_json(), memory=memory,
        days=list(per_input.values()), budget=budget))


def _file_state(path: str) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev


def _check_unchanged(seen: dict[str, tuple[int, int, int, int]]) -> None:
    """Splits are byte ranges planned on the sizes seen before the map: an input that grew,
    shrank or was replaced since then was read in part, or in parts of two versions. Failing
    beats a result that silently misses lines."""
    for path, before in seen.items():
        try:
            now = _file_state(path)
        except FileNotFoundError:
            now = None
        if now != before:
            what = "was removed" if now is None else (
                f"went from {before[0]} to {now[0]} bytes" if now[0] != before[0]
                else "was modified or replaced")
            raise JobError(f"{path} changed while it was being read ({what}); run again once "
                           "its writer has finished")


def _reduce_tasks(job_ref: JobSpec, map_results: list[MapResult], scratch: str,
                  is_arrays: bool) -> list[ReduceTask]:
    runs: dict[tuple[str, int], list[str]] = {}
    for result in map_results:
        for channel, partition, path in result.runs:
            runs.setdefault((channel, partition), []).append(path)
    ext = "tbl" if is_arrays else "jsonl"
    return [ReduceTask(job_ref, i, channel, partition, tuple(paths),
                       os.path.join(scratch, f"reduce.{channel}.p{partition:05d}.{ext}"))
            for i, ((channel, partition), paths) in enumerate(sorted(runs.items()))]


def _commit_records(results: list[ReduceResult], output: str) -> None:
    """Merge the reducers' sorted outputs into one file sorted by key."""
    streams = [codec.read_lines(r.path) for r in results if r.path]
    with atomic_writer(output) as f:
        for line in heapq.merge(*streams, key=codec.line_order):
            f.write(line)


def _commit_tables(results: list[ReduceResult], scratch: str, output: str) -> None:
    """An array job's output is a folder of ``<channel>-<partition>.tbl`` tables."""
    staged = os.path.join(scratch, "output")
    os.mkdir(staged)
    for r in results:
        if r.path:
            os.replace(r.path, os.path.join(staged, f"{r.channel}-{r.partition:05d}.tbl"))
    replace_dir(staged, output)


def _report(job: Any, inputs: list[str], output: str, backend: Backend,
            map_results: list[MapResult], reduce_results: list[ReduceResult], clock: StageClock,
            peak: int, started: float, reducers: int, split_size: int,
            trace: Trace) -> dict[str, Any]:
    counters: dict[str, int] = {}
    samples: list[Any] = []
    for r in map_results:
        for name, value in r.counters.items():
            counters[name] = counters.get(name, 0) + value
        samples.extend(r.samples)
    report: dict[str, Any] = {
        "job": type(job).__module__ + ":" + type(job).__name__,
        "params": job.params(),
        "output": output,
        "inputs": [{"path": p, "bytes": os.path.getsize(p)} for p in inputs],
        "input_bytes": sum(os.path.getsize(p) for p in inputs),
        "map_tasks": len(map_results),
        "reduce_tasks": len(reduce_results),
        "reducers": reducers,
        "split_size": split_size,
        "lines": sum(r.lines for r in map_results),
        "records_emitted": sum(r.records for r in map_results),
        "records_output": sum(r.records for r in reduce_results),
        "spills": sum(r.spills for r in map_results),
        "counters": counters,
        "stage_seconds": clock.seconds,
        "wall_seconds": round(time.time() - started, 4),
        "peak_rss_bytes": peak,
        "workers_used": sorted({r.worker for r in map_results}),
        **backend.describe(),
        "tasks": trace.to_json(),
    }
    if samples:
        report["samples"] = samples[: getattr(job, "max_samples", 100)]
    return report
