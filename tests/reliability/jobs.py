"""Jobs for the reliability tests, imported by worker processes by name."""
from __future__ import annotations

import os
import signal

from jobs.top50 import DailyListens
from jobs.song_plays import SongPlays


class RaisesMultiLine(SongPlays):
    """Fails on the line ``boom`` with an exception whose text spans lines (numpy and remote
    errors do): the command line must still print one line."""

    def mapper(self, line):
        if line == "boom":
            raise ValueError("first line of the reason\n  second line\n\nthird")
        yield from super().mapper(line)


class DailyListensKillsItsWorkerOnce(DailyListens):
    """The daily reduction, but the first map block anywhere SIGKILLs its worker process (a
    marker file, named by ``MR_TEST_KILL_MARKER``, says it happened)."""

    def map_block(self, block, offset):
        marker = os.environ.get("MR_TEST_KILL_MARKER")
        if marker:
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return super().map_block(block, offset)
