"""Compiled loops for the few steps that numpy can only do in many passes over memory.

    caller ──enabled()?──▶ yes: its @kernel function, compiled by numba on first use
              │                 (nogil, cached on disk: later processes load machine code)
              └─────────▶ no: the caller's numpy code, the reference the kernels are tested
                          against (MAPREDUCE_KERNELS=numpy, or numba not installed)

Each kernel is a plain loop over arrays whose every operand has an explicit type: numba
promotes uint64 mixed with int64 to float64, which would be slow and inexact, so constants
beside uint64 values are written ``np.uint64(...)``.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Callable, TypeVar

ENV = "MAPREDUCE_KERNELS"
F = TypeVar("F", bound=Callable[..., Any])


@functools.cache
def _numba() -> Any:
    try:
        import numba
    except ImportError:
        return None
    return numba


def enabled() -> bool:
    """Whether the compiled kernels are used (read on every call: tests switch it)."""
    choice = os.environ.get(ENV, "numba")
    if choice == "numpy":
        return False
    if choice != "numba":
        raise ValueError(f"{ENV} must be 'numba' or 'numpy', not {choice!r}")
    return _numba() is not None


def kernel(fn: F) -> F:
    """``fn`` compiled with numba the first time it is called (in each process)."""
    compiled: Callable[..., Any] | None = None

    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        nonlocal compiled
        if compiled is None:
            compiled = _numba().njit(cache=True, nogil=True)(fn)
        return compiled(*args)

    return call  # type: ignore[return-value]
