"""Jobs that misbehave on purpose, for the engine's failure tests (imported by workers by name)."""
from __future__ import annotations

import os
import signal
import stat
import struct

from mapreduce import Job


class SongPlays(Job):
    """Plays per song field, as text: the framework's tests have a job of their own, so that they
    never import the jobs package."""

    def mapper(self, line):
        song, sep, _ = line.partition("|")
        if sep and song:
            yield song, 1
        else:
            self.increment("lines_without_song")

    def combiner(self, song, counts):
        yield song, sum(counts)

    def reducer(self, song, counts):
        yield song, sum(counts)


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
    """At the line ``half``, the first time: write the start of a result message to the worker's
    pipe to the pool, then SIGKILL its own worker, as a worker killed while sending its result
    does. The pool must read that as a dead worker, not wait for the rest of the message."""

    def mapper(self, line):
        marker = os.environ["MR_TEST_KILL_MARKER"]
        if line == "half" and not os.path.exists(marker):
            open(marker, "w").close()
            write_half_a_message_and_die()
        yield from super().mapper(line)


def write_half_a_message_and_die() -> None:
    """A message header (multiprocessing.connection's: a 4-byte length) promising bytes that
    never come, on the pool's pipe, then SIGKILL. The pool's pipe is the worker's only socket."""
    sockets = [fd for fd in range(3, 1024) if _is_socket(fd)]
    assert len(sockets) == 1, f"expected one socket, the pool's pipe; found fds {sockets}"
    os.write(sockets[0], struct.pack("!i", 4096) + b"x" * 100)
    os.kill(os.getpid(), signal.SIGKILL)


def _is_socket(fd: int) -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False
