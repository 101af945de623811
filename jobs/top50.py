"""The top K songs of each country and of each user over the N days ending on a date.

    listen-YYYYMMDD.log ──DailyListens (per-input step, cached per day)──▶
        country: (country, song, count) by country    user: (user, song, count) by user
    N days ──TopSongs (window step)──▶ sum per (group, song), keep the top K per group
        ──▶ country_topK[_Ndays]_D.txt   FR|sng_id:n,sng_id:n,...   (countries A-Z)
            user_topK[_Ndays]_D.txt      user_id|sng_id:n,...       (users as integers)

Songs by count descending, ties by song id ascending. ``mapreduce top50`` is ``TopSongs`` with
its defaults (7 days, top 50); ``jobs.yearly_top10`` shares the same cached days.
"""
from __future__ import annotations

import datetime as dt

import numpy as np

from mapreduce import ArrayJob, Option
from mapreduce.aggregate import sum_by_key, top_k
from mapreduce.partition import partition_ints
from mapreduce.textcols import Fixed, Int, Text, format_rows
from mapreduce.windowed import WindowJob
from jobs.listens import COUNTRY_BYTES, LISTEN_LOGS, parse_block

KEYS = ("group", "song")
#: ranks are int64: a larger K failed deep in numpy
MAX_TOP = 2**63 - 1


class DailyListens(ArrayJob):
    """One day's full counts of each (country, song) and each (user, song).

    Channel ``country`` is partitioned by country and channel ``user`` by user, so a window over
    several days merges partition p of each day with no further shuffle.
    """

    name = "daily"
    channels = ("country", "user")

    def map_block(self, block: bytes, offset: int):
        parsed = parse_block(block, offset, self.max_samples)
        # Summed once per spill (map_combine), not per block: a block's (country, song) rows
        # shrink by only a quarter, so a sum per block cost more than it saved
        tables = {
            "country": {"group": parsed["country"], "song": parsed["song"]},
            "user": {"group": parsed["user"], "song": parsed["song"]},
        }
        stats = {"lines": parsed["lines"], "corrupt_lines": parsed["corrupt"],
                 "samples": parsed["samples"]}
        return tables, stats

    def combine(self, channel, tables):
        return sum_by_key(tables, KEYS)

    def map_combine(self, channel, tables):
        if channel == "user":
            # a task's (user, song) pairs are nearly all distinct: summing them here would sort
            # every row twice (here and in the reduce) to drop about one in ten
            return {n: np.concatenate([t[n] for t in tables]) for n in KEYS}
        return self.combine(channel, tables)

    def partition(self, channel, table, partitions):
        return partition_ints(table["group"], partitions)


class TopSongs(WindowJob):
    """The top ``top`` songs per country and per user over the ``days`` days ending on a date."""

    name = "top"
    inputs = LISTEN_LOGS
    per_input = DailyListens
    options = (Option("days", int, 7, "window length in days", minimum=1),
               Option("top", int, 50, "songs kept per group", minimum=1, maximum=MAX_TOP))
    top: int
    #: a window's counts are sums: partial sums of blocks of days (rollups) add up to the same
    rollups = True
    #: blocks of 64 days only, whose days are then kept keyed against them (a quarter of their
    #: size): a year's store of full-rate days is about 40 GB this way, about 96 GB with blocks
    #: of 8 days as well (README, "Long windows")
    rollup_levels = (64,)
    row_keys = KEYS

    def output_names(self, day: dt.date) -> dict[str, str]:
        span = "" if self.days == 7 else f"_{self.days}days"
        stem = f"top{self.top}{span}_{day:%Y%m%d}"
        return {"country": f"country_{stem}.txt", "user": f"user_{stem}.txt",
                "summary": f"{stem}.summary.json"}

    def finalize(self, channel, table):
        best, rank = top_k(table, self.top, KEYS)
        return {**best, "rank": rank}

    def format(self, channel, table):
        group, rank, n = table["group"], table["rank"], len(table["group"])
        first = rank == 0
        last = np.ones(n, dtype=bool)
        last[:-1] = group[1:] != group[:-1]
        # a country's key is its index in the sorted ISO list: merged, the lines are A-Z
        prefix = (Fixed(COUNTRY_BYTES[group], where=first) if channel == "country"
                  else Int(group, where=first))
        text = format_rows([prefix, Text(b"|", first), Int(table["song"]), b":",
                            Int(table["count"]), Text(b",", ~last), Text(b"\n", last)], n)
        return group[first], text


class Top50(TopSongs):
    """``mapreduce top50``: 7 days, top 50."""
