"""Jobs for the Dask tests. They live in their own module so that worker processes can import them
without importing the test module (and pytest with it)."""
from __future__ import annotations

import os
import signal
import time
from typing import Iterable

from jobs.song_plays import SongPlays


class SlowSongPlays(SongPlays):
    """SongPlays whose map tasks take a while, sleeping rather than spinning (the test machine's
    cores are shared), so that a worker can be killed while it is surely in the middle of one."""

    SLEEP_EVERY = 1000
    SLEEP_SECONDS = 0.1

    def mapper(self, line: str) -> Iterable[tuple[str, int]]:
        seen = self.__dict__.get("_seen", 0) + 1
        self._seen = seen
        if seen % self.SLEEP_EVERY == 0:
            time.sleep(self.SLEEP_SECONDS)
        return super().mapper(line)


class WorkerKiller(SongPlays):
    """Kills the worker process that maps it, every time: what an out-of-memory kill looks like."""

    def mapper(self, line: str) -> Iterable[tuple[str, int]]:
        from distributed import get_worker

        get_worker()  # raises ValueError outside a dask worker: never kill the test process
        os.kill(os.getpid(), signal.SIGKILL)
        return super().mapper(line)
