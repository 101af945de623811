"""The top 10 songs per country and per user over the last 365 days.

It reuses the daily store of the top-50 job, so only days not yet reduced read their logs:

    mapreduce top --job jobs.yearly_top10:YearlyTop10 --logs LOGS --out OUT

which is the same as ``mapreduce top --days 365 --top 10 --logs LOGS --out OUT``.
"""
from __future__ import annotations

from jobs.topk import WindowJob


class YearlyTop10(WindowJob):
    days = 365
    top = 10
