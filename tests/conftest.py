from __future__ import annotations

import datetime as dt
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from mapreduce.executors import make_backend  # noqa: E402


@pytest.fixture(scope="session")
def local_backend():
    """One real process pool (spawn, 2 workers) shared by the tests that need one."""
    with make_backend("local", 2) as backend:
        yield backend


@pytest.fixture(scope="session")
def inline_backend():
    with make_backend("inline") as backend:
        yield backend


@pytest.fixture(params=["inline", "local"])
def backend(request, inline_backend, local_backend):
    """Each end-to-end test runs on both executors."""
    return inline_backend if request.param == "inline" else local_backend


def temp_names(folder: str) -> list[str]:
    """Temporary files or folders anywhere under ``folder``."""
    found = []
    for root, dirs, files in os.walk(folder):
        found += [os.path.join(root, n) for n in dirs + files if ".tmp-" in n]
    return found


DAY = dt.date(2024, 1, 7)
