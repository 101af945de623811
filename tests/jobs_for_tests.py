"""Jobs that misbehave on purpose, for the engine's failure tests (imported by workers by name)."""
from __future__ import annotations

import os
import signal
import struct
import sys

from jobs.song_plays import SongPlays


class KillsItsWorkerOnce(SongPlays):
    """SIGKILLs its own worker process at the line ``kill``, the first time only."""

    def mapper(self, line):
        marker = os.environ["MR_TEST_KILL_MARKER"]
        if line == "kill" and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        yield from super().mapper(line)


class KillsItsWorkerAlways(SongPlays):
    def mapper(self, line):
        if line == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        yield from super().mapper(line)


class RaisesOnBoom(SongPlays):
    def mapper(self, line):
        if line == "boom":
            raise ValueError("cannot map 'boom'")
        yield from super().mapper(line)


class DiesMidResult(SongPlays):
    """At the line ``half``, the first time: write the start of a result message to the pool's
    result pipe, then SIGKILL its own worker, as a worker killed while sending its result does.
    The pool then waits for the rest of that message and never reports the worker dead."""

    def mapper(self, line):
        marker = os.environ["MR_TEST_KILL_MARKER"]
        if line == "half" and not os.path.exists(marker):
            open(marker, "w").close()
            frame = sys._getframe()
            while frame is not None and "result_queue" not in frame.f_locals:
                frame = frame.f_back
            writer = frame.f_locals["result_queue"]._writer
            writer._send(struct.pack("!i", 4096))  # a header promising bytes that never come
            os.kill(os.getpid(), signal.SIGKILL)
        yield from super().mapper(line)
