"""The listen jobs' commands: ``top50``, ``top`` and ``generate`` (entry points of the
``mapreduce.commands`` group, see setup.cfg).

``top50`` and ``top`` are ``mapreduce run jobs.top50:TopSongs --logs ... --out ...`` with the
options the README documents: ``top --job`` picks another TopSongs class for the defaults of
``--days`` and ``--top`` (``jobs.yearly_top10:YearlyTop10``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os

from mapreduce.cli import (add_report_option, add_run_options, add_window_options, build_job,
                           run_window_command)
from mapreduce.errors import UsageError
from mapreduce.inputs import parse_date
from mapreduce.job import class_ref, job_class
from jobs.top50 import Top50, TopSongs


def _window_command(sub: argparse._SubParsersAction, name: str, **kw: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, formatter_class=argparse.RawDescriptionHelpFormatter, **kw)
    add_window_options(p)
    p.add_argument("--out", required=True, help="folder for the top files and the summary")
    add_run_options(p, reducers_help="partitions of a new store (default 64)")
    add_report_option(p)
    return p


def register_top50(sub: argparse._SubParsersAction) -> None:
    p = _window_command(
        sub, "top50", help="top 50 songs per country and per user over 7 days",
        description="Write country_top50_D.txt and user_top50_D.txt for the 7 days ending on D, "
        "reducing each log once into the store.",
        epilog="example:\n  mapreduce top50 --logs logs --out out --date 20240107")
    p.set_defaults(handler=cmd_top, days=None, top=None, job=None)


def register_top(sub: argparse._SubParsersAction) -> None:
    p = _window_command(
        sub, "top", help="top K songs per country and per user over N days",
        description="The generic window: country_topK[_Ndays]_D.txt and user_topK[_Ndays]_D.txt. "
        "top50 is --days 7 --top 50.",
        epilog="examples:\n  mapreduce top --logs logs --out out --days 30 --top 10"
        "\n  mapreduce top --job jobs.yearly_top10:YearlyTop10 --logs logs --out out")
    p.add_argument("--days", type=int, default=None, help="window length in days (default 7)")
    p.add_argument("--top", type=int, default=None, help="songs kept per group (default 50)")
    p.add_argument("--job", default=None, metavar="MODULE:CLASS",
                   help="a TopSongs class giving the defaults for --days and --top")
    p.set_defaults(handler=cmd_top)


def top_job(args: argparse.Namespace) -> tuple[TopSongs, type[TopSongs]]:
    """The TopSongs job that ``--job``, ``--days`` and ``--top`` name (top, status)."""
    cls: type[TopSongs] = Top50
    if args.job:
        try:
            cls = job_class(args.job)
        except ValueError as exc:
            raise UsageError(f"cannot load window job {args.job!r}: {exc}") from None
        if not issubclass(cls, TopSongs):
            raise UsageError(f"{args.job!r} is not a TopSongs class")
    return build_job(cls, {k: v for k, v in (("days", args.days), ("top", args.top))
                           if v is not None}), cls


def cmd_top(args: argparse.Namespace) -> int:
    job, cls = top_job(args)
    return run_window_command(job, class_ref(cls), args)


def register_generate(sub: argparse._SubParsersAction) -> None:
    from jobs.generate import add_arguments

    p = sub.add_parser("generate", help="write deterministic synthetic listen logs",
                       description="Seeded synthetic logs with realistic skew and 0.1% corrupt "
                       "lines (also scripts/generate_logs.py).",
                       epilog="example:\n  mapreduce generate --out logs --days 7 "
                       "--lines-per-day 100000",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(handler=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    from jobs.generate import generate

    if args.days < 1 or args.lines_per_day < 0:
        raise UsageError("--days must be at least 1 and --lines-per-day at least 0")
    if (args.users is not None and args.users < 1) or (args.songs is not None and args.songs < 1):
        raise UsageError("--users and --songs must be at least 1")
    if not 0 <= args.corrupt_share <= 1:
        raise UsageError("--corrupt-share must be between 0 and 1")
    end = parse_date(args.end, "--end") if args.end else dt.date(2024, 1, 7)
    paths = generate(args.out, days=args.days, lines_per_day=args.lines_per_day, end=end,
                     seed=args.seed, users=args.users, songs=args.songs,
                     corrupt_share=args.corrupt_share, id_width=args.id_width, force=args.force)
    print(f"wrote {len(paths)} log(s) to {args.out}: {os.path.basename(paths[0])} .. "
          f"{os.path.basename(paths[-1])}")
    return 0
