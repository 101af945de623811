"""Example job, one record at a time: plays per song across all input files.

    mapreduce run jobs.song_plays:SongPlays listen-*.log --out out/

Output ``out/song_plays.tsv``: one ``sng_id<TAB>plays`` line per song, songs in integer order.
Only valid lines count (the rule of ``jobs.listens``); the others are counted as
``corrupt_lines`` in the run's report.
"""
from __future__ import annotations

import re
from typing import Iterable, Iterator

from mapreduce import Job
from jobs.listens import ISO_CODES, MAX_ID

LINE = re.compile(r"([0-9]{1,19})\|([0-9]{1,19})\|([A-Z]{2})")
COUNTRIES = frozenset(ISO_CODES)


class SongPlays(Job):
    def mapper(self, line: str) -> Iterable[tuple[int, int]]:
        m = LINE.fullmatch(line)
        if m and m[3] in COUNTRIES and int(m[1]) <= MAX_ID and int(m[2]) <= MAX_ID:
            yield int(m[1]), 1
        else:
            self.increment("corrupt_lines")

    def combiner(self, song: int, counts: Iterator[int]) -> Iterable[tuple[int, int]]:
        yield song, sum(counts)

    def reducer(self, song: int, counts: Iterator[int]) -> Iterable[tuple[int, int]]:
        yield song, sum(counts)
