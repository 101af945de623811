"""The top 10 songs per country and per user over the last 365 days.

It reuses the daily store of the top-50 job (the same per-input step), so only days not yet
reduced read their logs:

    mapreduce run jobs.yearly_top10:YearlyTop10 --logs LOGS --out OUT
    mapreduce top --job jobs.yearly_top10:YearlyTop10 --logs LOGS --out OUT

which is the same as ``mapreduce top --days 365 --top 10 --logs LOGS --out OUT``.
"""
from __future__ import annotations

from mapreduce import Option
from jobs.top50 import MAX_TOP, TopSongs


class YearlyTop10(TopSongs):
    options = (Option("days", int, 365, "window length in days", minimum=1),
               Option("top", int, 10, "songs kept per group", minimum=1, maximum=MAX_TOP))
