"""Example job: plays per song across all input files (lines ``sng_id|user_id|country``).

    mapreduce run jobs.song_plays:SongPlays listen-*.log --out out/

Output ``out/song_plays.tsv``: one ``"song"<TAB>plays`` line per song, sorted by song.
"""
from __future__ import annotations

from typing import Iterable, Iterator

from mapreduce import Job


class SongPlays(Job):
    def mapper(self, line: str) -> Iterable[tuple[str, int]]:
        song, sep, _ = line.partition("|")
        if sep and song:
            yield song, 1
        else:
            self.increment("lines_without_song")

    def combiner(self, song: str, counts: Iterator[int]) -> Iterable[tuple[str, int]]:
        yield song, sum(counts)

    def reducer(self, song: str, counts: Iterator[int]) -> Iterable[tuple[str, int]]:
        yield song, sum(counts)
