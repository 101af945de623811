"""The top 10 countries of each song over the 28 days ending on a date (``--days``, ``--top``).

    mapreduce run jobs.song_countries:SongCountries --logs LOGS --out OUT [--date D]
    ──▶ OUT/song_top_countries_28days_D.txt: sng_id|FR:n,DE:n,... (songs in integer order)

Each cached day holds its (song, country) counts; the window sums them and ranks each song's
countries by count descending, then code ascending (a code's index in the A-Z ISO list).
"""
import numpy as np

from mapreduce import Option
from mapreduce.aggregate import sum_by_key, top_k
from mapreduce.partition import partition_ints
from mapreduce.textcols import Fixed, Int, Text, format_rows
from mapreduce.windowed import WindowJob
from jobs.listens import COUNTRY_BYTES, LISTEN_LOGS, parse_block


class SongCountries(WindowJob):
    name, inputs, channels, keys = "top_countries", LISTEN_LOGS, ("song",), ("song", "country")
    options = (Option("days", int, 28, "window length in days", minimum=1),
               Option("top", int, 10, "countries kept per song", minimum=1))

    def map_block(self, block, offset):
        p = parse_block(block, offset, self.max_samples)
        counts = sum_by_key([{"song": p["song"], "country": p["country"]}], ("song", "country"))
        return {"song": counts}, {"lines": p["lines"], "corrupt_lines": p["corrupt"],
                                  "samples": p["samples"]}

    def combine(self, channel, tables):  # one day's blocks, and the window's days: a sum
        return sum_by_key(tables, self.keys)

    def partition(self, channel, table, partitions):
        return partition_ints(table[self.keys[0]], partitions)

    def group_column(self, channel):
        return self.keys[0]

    def finalize(self, channel, table):
        best, rank = top_k(table, self.top, self.keys)
        return {**best, "first": rank == 0}

    def format(self, channel, t):
        group, first, last = t[self.keys[0]], t["first"], np.append(t["first"][1:], True)
        code = Fixed(COUNTRY_BYTES[t["country"]])
        text = format_rows([Int(group, first), Text(b"|", first), code, b":", Int(t["count"]),
                            Text(b",", ~last), Text(b"\n", last)], len(group))
        return group[first], text
