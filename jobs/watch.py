"""``mapreduce watch``: a daemon that keeps the top-K files current as logs arrive.

    mapreduce watch --logs LOGS --out OUT ...
        │ check folders, set up its log (text/JSON, stderr + rotating file), make the backend
        ▼
    Daemon (jobs.watch_daemon) ◀── events: jobs.watch_events ── watchdog on LOGS
        │ which dates: jobs.watch_plan (files missing or stale, oldest first)
        ▼
    run_window_job(date=D) ──▶ OUT/country_top50_D.txt, user_top50_D.txt, top50_D.summary.json

Which dates: every date that has a log (from ``--since`` on, if given) whose files are missing
or stale, where stale means a log of its window is new, changed, removed or was reduced again.
The decision reads only files, so after ``kill -9`` a restart finishes what was cut short and
writes what an uninterrupted run would have written. SIGTERM/SIGINT: exit 0. See the README's "Running it every day".
"""
from __future__ import annotations

import argparse
import logging
import os

from mapreduce.cli import (add_ops_options, add_run_options, backend_from_args, build_job,
                           log_level, ops_from_args)
from mapreduce.metrics import check_path
from mapreduce.errors import UsageError
from mapreduce.inputs import check_folders, parse_date
from mapreduce.job import class_ref
from mapreduce.store import DEFAULT_PARTITIONS
from jobs.top50 import TopSongs


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watch", help="daemon: keep the top-K files current as logs arrive",
        description="Watch a logs folder and compute the window files of every date whose "
        "files are missing or stale, oldest first, then each time a log is complete. "
        "Stops cleanly on SIGTERM or SIGINT (exit 0).",
        epilog="example:\n  mapreduce watch --logs logs --out out --workers 2 "
        "--log-file watch.log --log-format json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--logs", required=True, help="folder of listen-YYYYMMDD.log files")
    p.add_argument("--out", required=True, help="folder for the top files and the summaries")
    p.add_argument("--store", default=None, help="daily reductions cache (default: OUT/store)")
    p.add_argument("--days", type=int, default=7, help="window length in days (default 7)")
    p.add_argument("--top", type=int, default=50, help="songs kept per group (default 50)")
    p.add_argument("--since", default=None,
                   help="compute no date before this one, YYYYMMDD or YYYY-MM-DD (default: every "
                        "log's date)")
    p.add_argument("--quiet-period", type=positive_float, default=10.0, metavar="SECONDS",
                   help="without close events: a log is complete once unchanged this long "
                        "(default 10)")
    p.add_argument("--retry-seconds", type=positive_float, default=30.0, metavar="SECONDS",
                   help="wait before retrying a failed run or an unreadable log (default 30)")
    p.add_argument("--polling", action="store_true",
                   help="poll the folder instead of kernel events (network filesystems)")
    p.add_argument("--no-wait", action="store_true",
                   help="exit at once if another job holds the store's lock at start")
    p.add_argument("--log-file", default=None, help="also log to this file (rotated at 10 MiB)")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="text lines (default) or JSON lines")
    add_run_options(p, reducers_help="partitions of a new store (default 64)")
    add_ops_options(p)
    p.set_defaults(handler=cmd_watch)


def cmd_watch(args: argparse.Namespace) -> int:
    try:  # imported here: every other command works without watchdog installed
        from jobs.watch_daemon import Daemon, WatchConfig
    except ImportError as exc:
        raise UsageError(f"mapreduce watch needs {exc.name or 'watchdog'}: "
                         "pip install watchdog") from None
    from jobs.watch_log import setup_logging

    job = build_job(TopSongs, {"days": args.days, "top": args.top})
    since = parse_date(args.since, "--since") if args.since else None
    store = args.store or os.path.join(args.out, "store")
    check_folders(args.logs, args.out, store)  # a bad store is exit 2, not a retry loop
    if args.log_file:
        folder = os.path.dirname(os.path.abspath(args.log_file))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise UsageError(f"--log-file: folder {folder} does not exist or is not writable")
    metrics = check_path(args.metrics_file)
    # the daemon's events are its product: --quiet only turns off progress bars here
    level = (log_level(args) if args.log_level or args.verbose else logging.INFO)
    setup_logging(args.log_format, args.log_file, level)
    cfg = WatchConfig(logs=args.logs, out=args.out, ops=ops_from_args(args), metrics_file=metrics,
                      store=store, job=job, job_ref=class_ref(TopSongs),
                      quiet_period=args.quiet_period, retry_seconds=args.retry_seconds,
                      since=since, no_wait=args.no_wait, polling=args.polling,
                      partitions=args.reducers or DEFAULT_PARTITIONS, split_size=args.split_size)
    with backend_from_args(args) as backend:
        return Daemon(cfg, backend).run()
