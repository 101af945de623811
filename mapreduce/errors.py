"""The framework's one exception type, carrying where a failure happened."""
from __future__ import annotations


class JobError(Exception):
    """A run failed. ``job`` (its ``module:Class``), ``step`` (``per-input`` or ``window`` in a
    windowed run), ``stage``, ``task`` and ``split`` (the input's byte range) say where; the
    worker's error is ``__cause__``.

    ``str()`` is a single line fit for a command-line error message.
    """

    def __init__(self, message: str, *, stage: str | None = None, task: int | None = None,
                 split: str | None = None, job: str | None = None,
                 step: str | None = None) -> None:
        self.message = message
        self.stage = stage
        self.task = task
        self.split = split
        self.job = job
        self.step = step
        super().__init__(message)

    def __str__(self) -> str:
        where = []
        if self.job is not None:
            where.append(f"job {self.job}")
        if self.step is not None:
            where.append(f"{self.step} step")
        if self.stage is not None:
            where.append(f"{self.stage} stage")
        if self.task is not None:
            where.append(f"task {self.task}")
        if self.split is not None:
            where.append(f"split {self.split}")
        prefix = f"{', '.join(where)}: " if where else ""
        return prefix + self.message


class UsageError(Exception):
    """Bad command-line input; the CLI prints it on one line and exits 2."""
