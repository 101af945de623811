"""Run a check under each kernel backend: numba's compiled loops and numpy's reference code."""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from mapreduce import kernels

BACKENDS = ("numpy", "numba")


@contextmanager
def backend(name: str) -> Iterator[None]:
    old = os.environ.get(kernels.ENV)
    os.environ[kernels.ENV] = name
    try:
        assert kernels.enabled() == (name == "numba"), "numba is a dependency: it must load"
        yield
    finally:
        if old is None:
            del os.environ[kernels.ENV]
        else:
            os.environ[kernels.ENV] = old
