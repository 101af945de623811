"""Jobs for the reliability tests, imported by worker processes by name."""
from __future__ import annotations

from jobs.song_plays import SongPlays


class RaisesMultiLine(SongPlays):
    """Fails on the line ``boom`` with an exception whose text spans lines (numpy and remote
    errors do): the command line must still print one line."""

    def mapper(self, line):
        if line == "boom":
            raise ValueError("first line of the reason\n  second line\n\nthird")
        yield from super().mapper(line)
