"""A small multiprocessing MapReduce framework.

The public surface: :class:`Job` and :class:`ArrayJob` to write jobs, :class:`Option` for their
parameters, :class:`WindowJob` and :class:`DatedInputs` for jobs over days whose per-day results
are cached, :func:`run_job` and :func:`run_window_job` to run them, :func:`make_backend` to
choose where tasks run, and :class:`JobError` for every failure.
"""
from __future__ import annotations

from mapreduce.errors import JobError
from mapreduce.job import ArrayJob, Job, JobSpec, Option, Table, load_job
from mapreduce.memtune import tune_malloc

# Every process that runs tasks imports this package first (workers unpickle task functions
# from it or from jobs built on it), so this is where freed memory is made returnable.
tune_malloc()

__all__ = ["ArrayJob", "DatedInputs", "Job", "JobError", "JobSpec", "Option", "Table",
           "WindowJob", "load_job", "make_backend", "run_job", "run_window_job"]

_LAZY = {"run_job": "mapreduce.runner", "make_backend": "mapreduce.executors",
         "WindowJob": "mapreduce.windowed", "run_window_job": "mapreduce.windowed",
         "DatedInputs": "mapreduce.inputs"}


def __getattr__(name: str):  # lazy: keep `import mapreduce` cheap in spawned workers
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
