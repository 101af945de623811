"""A small multiprocessing MapReduce framework.

The public surface: :class:`Job` and :class:`ArrayJob` to write jobs, :func:`run_job` to run one,
:func:`make_backend` to choose where tasks run, and :class:`JobError` for every failure.
"""
from __future__ import annotations

from mapreduce.errors import JobError
from mapreduce.job import ArrayJob, Job, Table, load_job
from mapreduce.memtune import tune_malloc

# Every process that runs tasks imports this package first (workers unpickle task functions
# from it or from jobs built on it), so this is where freed memory is made returnable.
tune_malloc()

__all__ = ["ArrayJob", "Job", "JobError", "Table", "load_job", "run_job", "make_backend"]


def __getattr__(name: str):  # lazy: keep `import mapreduce` cheap in spawned workers
    if name == "run_job":
        from mapreduce.runner import run_job

        return run_job
    if name == "make_backend":
        from mapreduce.executors import make_backend

        return make_backend
    raise AttributeError(name)
