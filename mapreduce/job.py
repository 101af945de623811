"""How a job is written.

Two styles share one runner:

* :class:`Job`, record at a time, in the spirit of mrjob: ``mapper(line)`` yields ``(key, value)``
  pairs, an optional ``combiner(key, values)`` and ``reducer(key, values)`` fold the values of one key.
  Keys and values are JSON values in transit (orjson): a tuple comes back as a list.
* :class:`ArrayJob`, a bulk map: ``map_block`` gets many whole lines at once and returns numpy
  columns per named output ("channel"); ``combine`` folds tables; ``partition`` says which reducer
  each row goes to. One Python call per 2 MiB instead of one per line is what makes tens of millions
  of lines a day cheap.

A job declares its parameters as :class:`Option` values; they reach every task, because what
crosses a process boundary is a :class:`JobSpec`: the job's ``"module:Class"`` reference and its
parameters, from which each worker builds the job again. A reference may also name a file,
``./my_job.py:MyJob``, or a module in the current folder, ``my_job:MyJob``.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping

import numpy as np

Table = Mapping[str, np.ndarray]  # equal-length named columns


@dataclass(frozen=True)
class Option:
    """A parameter of a job: ``mapreduce run JOB --help`` lists it as ``--NAME``."""

    name: str
    type: Callable[[str], Any]
    default: Any
    help: str
    minimum: int | None = None
    maximum: int | None = None
    #: a windowed job's option that changes its per-input step (and so its cached results)
    per_input: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> Any:
        """The value, or ValueError saying what is wrong with it (the CLI makes it exit 2)."""
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{self.flag} must be at least {self.minimum}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{self.flag} must be at most {self.maximum}, got {value}")
        return value


class _Parameterised:
    """What both job styles share: a name, declared options, and counters."""

    #: base name of the output; defaults to the module's last component
    name: str | None = None
    #: the job's parameters; each becomes an attribute of the instance
    options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, **params: Any) -> None:
        known = {o.name: o for o in self.options}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(f"{type(self).__name__} has no option {', '.join(unknown)}")
        for option in self.options:
            value = params.get(option.name)
            setattr(self, option.name,
                    option.default if value is None else option.check(value))
        #: where the lines being mapped come from, set by the map task before the first call
        self.input_path: str | None = None

    def params(self) -> dict[str, Any]:
        return {o.name: getattr(self, o.name) for o in self.options}

    def counters(self) -> dict[str, int]:
        """Counters the job kept while mapping; summed over tasks into the run report."""
        return dict(getattr(self, "_counters", {}))

    def increment(self, counter: str, amount: int = 1) -> None:
        counts = self.__dict__.setdefault("_counters", {})
        counts[counter] = counts.get(counter, 0) + amount


class Job(_Parameterised):
    """Record-at-a-time job. Subclass and override ``mapper`` and ``reducer`` (``combiner`` optional).

    Output lines are sorted by key: integers as integers, then everything else by its JSON text.
    """

    def mapper(self, line: str) -> Iterable[tuple[Any, Any]]:
        raise NotImplementedError

    combiner: Any = None  # optional: def combiner(self, key, values) -> Iterable[(key, value)]

    def reducer(self, key: Any, values: Iterator[Any]) -> Iterable[tuple[Any, Any]]:
        raise NotImplementedError


class ArrayJob(_Parameterised):
    """Bulk job over numpy columns. Override every method below."""

    #: named outputs of the map side, each partitioned and reduced on its own
    channels: tuple[str, ...] = ()

    def map_block(self, block: bytes, offset: int) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
        """Parse whole lines starting at file ``offset``; return ``(tables by channel, stats)``.

        ``stats`` holds counters (ints, summed across blocks and tasks) and optionally ``samples``,
        a list of small JSON values (kept in offset order, first ``max_samples`` per run).
        """
        raise NotImplementedError

    def combine(self, channel: str, tables: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Fold tables of one channel into one, sorted by key, one row per key."""
        raise NotImplementedError

    def map_combine(self, channel: str,
                    tables: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Fold a map task's tables of one channel before they are partitioned and written:
        ``combine`` unless overridden. Where keys barely repeat within a task, returning the
        rows as they are (concatenated) leaves the one sort to the reduce."""
        return self.combine(channel, tables)

    def partition(self, channel: str, table: dict[str, np.ndarray], partitions: int) -> np.ndarray:
        """Partition number (0 .. partitions-1) of every row of a map-combined table."""
        raise NotImplementedError

    max_samples: int = 100


@dataclass(frozen=True)
class JobSpec:
    """What travels to a worker: the job's reference and its parameters, small and frozen."""

    ref: str
    params: tuple[tuple[str, Any], ...] = ()

    def __str__(self) -> str:
        return self.ref

    def build(self) -> Any:
        return load_job(self.ref, dict(self.params))

    @property
    def label(self) -> str:
        """``module:Class`` without a file's folder: what an error message names."""
        module, _, cls = self.ref.rpartition(":")
        return f"{os.path.basename(module)}:{cls}"


def resolve_ref(ref: str) -> str:
    """The reference as every process can import it: a file path made absolute, and a module
    found only in the current folder (``my_job:MyJob``) turned into its file's path, since a
    worker may not share the caller's working folder or ``sys.path``."""
    module_name, sep, class_name = ref.rpartition(":")
    if not sep or not module_name or not class_name:
        raise ValueError(f"job must be given as MODULE:CLASS or FILE.py:CLASS, got {ref!r}")
    if module_name.endswith(".py") or os.sep in module_name:
        return f"{os.path.abspath(module_name)}:{class_name}"
    try:
        found = importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        found = False
    local = os.path.abspath(module_name.replace(".", os.sep) + ".py")
    if not found and os.path.isfile(local):
        return f"{local}:{class_name}"
    return ref


def job_class(ref: str) -> type:
    """The Job or ArrayJob class ``ref`` names; ValueError with a clear reason."""
    module_name, sep, class_name = ref.rpartition(":")
    if not sep or not module_name or not class_name:
        raise ValueError(f"job must be given as MODULE:CLASS or FILE.py:CLASS, got {ref!r}")
    if module_name.endswith(".py") or os.sep in module_name:
        module = _import_file(module_name)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(f"cannot import job module {module_name!r}: {exc} (a job file in "
                             f"the current folder is found as FILE.py:CLASS or MODULE:CLASS)") from exc
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or not issubclass(cls, _Parameterised):
        raise ValueError(f"{ref!r} is not a Job or ArrayJob class")
    return cls


_FILE_MODULE = "mapreduce_userjob_"


def class_ref(cls: type) -> str:
    """The reference another process imports ``cls`` by (a job file's path for a class loaded
    from a file)."""
    if cls.__module__.startswith(_FILE_MODULE):
        return f"{sys.modules[cls.__module__].__file__}:{cls.__qualname__}"
    return f"{cls.__module__}:{cls.__qualname__}"


def _import_file(path: str) -> Any:
    path = os.path.abspath(path)
    # one module per file and process: tasks of one run share the module and its classes
    name = _FILE_MODULE + "".join(c if c.isalnum() else "_" for c in path)
    if name in sys.modules:
        return sys.modules[name]
    if not os.path.isfile(path):
        raise ValueError(f"job file {path} does not exist")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_job(ref: str | JobSpec, params: Mapping[str, Any] | None = None) -> Any:
    """Import ``"package.module:Class"`` (or a file's) and return an instance built with
    ``params``; ValueError with a clear reason."""
    if isinstance(ref, JobSpec):
        return ref.build()
    cls = job_class(ref)
    job = cls(**dict(params or {}))
    if job.name is None:
        job.name = default_name(ref)
    return job


def default_name(ref: str) -> str:
    """A job's name when it sets none: its module's last component, or its file's stem."""
    module_name = ref.rpartition(":")[0]
    if module_name.endswith(".py"):
        return os.path.basename(module_name)[:-3]
    return module_name.rsplit(".", 1)[-1]
