"""Distinct listeners per country over the N days ending on a date (``--days``, default 7).

    mapreduce run jobs.distinct_listeners:DistinctListeners --logs LOGS --out OUT [--date D]
    ──▶ OUT/country_distinct_listeners_7days_D.txt: FR|1234567 per country, A-Z

Each cached day holds its distinct (country, user) pairs; the window is their union, counted per
country, so a user heard on several days counts once. The day's own figure: ``--days 1``.
"""
from mapreduce.aggregate import count_per_group, distinct_by_key
from mapreduce.partition import partition_ints
from mapreduce.textcols import Fixed, Int, format_rows
from mapreduce.windowed import WindowJob
from jobs.listens import COUNTRY_BYTES, LISTEN_LOGS, parse_block

KEYS = ("country", "user")


class DistinctListeners(WindowJob):
    name, inputs, channels = "distinct_listeners", LISTEN_LOGS, ("country",)

    def map_block(self, block, offset):
        p = parse_block(block, offset, self.max_samples)
        pairs = distinct_by_key([{"country": p["country"], "user": p["user"]}], KEYS)
        return {"country": pairs}, {"lines": p["lines"], "corrupt_lines": p["corrupt"],
                                    "samples": p["samples"]}

    def combine(self, channel, tables):  # one day's blocks, and the window's days: a union
        return distinct_by_key(tables, KEYS)

    def partition(self, channel, table, partitions):  # a country's pairs stay together
        return partition_ints(table["country"], partitions)

    def group_column(self, channel):
        return "country"

    def finalize(self, channel, table):
        return count_per_group(table, "country", "listeners")

    def format(self, channel, table):  # the key of a country is its index in the A-Z ISO list
        c, n = table["country"], table["listeners"]
        return c, format_rows([Fixed(COUNTRY_BYTES[c]), b"|", Int(n), b"\n"], len(c))
