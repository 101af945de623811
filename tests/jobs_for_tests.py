"""Jobs that misbehave on purpose, for the engine's failure tests (imported by workers by name)."""
from __future__ import annotations

import os
import signal

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
