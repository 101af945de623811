"""The ``mapreduce`` command line.

Every command parses its arguments, runs, and turns any expected failure into one line on stderr:
exit 2 for a bad command line, 1 for a run that failed, 130 when interrupted.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import logging
import os
import re
import sys

from mapreduce.errors import JobError, UsageError

log = logging.getLogger("mapreduce")

#: modules that add a command: each has ``register(subparsers)`` setting ``handler`` to a
#: function ``(args) -> exit code`` that raises UsageError / JobError like the commands here
COMMAND_MODULES: tuple[str, ...] = ("jobs.watch", "jobs.bench")

EXAMPLES = """\
examples:
  mapreduce generate --out logs --days 7 --lines-per-day 100000
  mapreduce top50 --logs logs --out out
  mapreduce top --logs logs --out out --days 30 --top 10
  mapreduce top --job jobs.yearly_top10:YearlyTop10 --logs logs --out out
  mapreduce run jobs.song_plays:SongPlays logs/*.log --out plays --reducers 4
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        raise UsageError(f"{self.prog}: {message}")


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)i?[bB]?\s*", text)
    if not m or int(m.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 64M, 512k or 1048576")
    return int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_run_options(p: argparse.ArgumentParser, *, reducers_help: str) -> None:
    p.add_argument("--workers", type=positive_int, default=None,
                   help="worker processes (default: physical cores)")
    p.add_argument("--executor", choices=("inline", "local", "dask"), default="local",
                   help="inline (in this process), local (process pool, default), dask (cluster)")
    p.add_argument("--scheduler", default=os.environ.get("DASK_SCHEDULER_ADDRESS"),
                   help="with --executor dask: tcp://HOST:8786 (default $DASK_SCHEDULER_ADDRESS; "
                        "none: a local cluster for this run)")
    p.add_argument("--reducers", type=positive_int, default=None, help=reducers_help)
    p.add_argument("--split-size", type=parse_size, default="64M",
                   help="bytes per map task, e.g. 64M (default)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_window_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--logs", required=True, help="folder of listen-YYYYMMDD.log files")
    p.add_argument("--out", required=True, help="folder for the top files and the summary")
    p.add_argument("--date", default=None,
                   help="last day of the window, YYYYMMDD or YYYY-MM-DD (default: newest log)")
    p.add_argument("--store", default=None, help="daily reductions cache (default: OUT/store)")
    p.add_argument("--strict", action="store_true",
                   help="fail, writing nothing, when a day of the window has no log")
    p.add_argument("--no-wait", action="store_true",
                   help="exit at once if another job holds the store's lock")
    add_run_options(p, reducers_help="partitions of a new store (default 64)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mapreduce", description="A multiprocessing MapReduce framework and "
                     "its daily top-50 songs job.", epilog=EXAMPLES,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("run", help="run any job: MODULE:CLASS over input files",
                       description="Run a job over input files. Output: OUT/<job>.tsv (record "
                       "jobs) or OUT/<job>/ (array jobs), and a .report.json beside it.",
                       epilog="example:\n  mapreduce run jobs.song_plays:SongPlays logs/*.log "
                       "--out plays --workers 2 --reducers 4",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", metavar="MODULE:JOBCLASS", help="e.g. jobs.song_plays:SongPlays")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="input files")
    p.add_argument("--out", required=True, help="output folder")
    add_run_options(p, reducers_help="reduce partitions (default 8)")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("top50", help="top 50 songs per country and per user over 7 days",
                       description="Write country_top50_D.txt and user_top50_D.txt for the 7 days "
                       "ending on D, reducing each log once into the store.",
                       epilog="example:\n  mapreduce top50 --logs logs --out out --date 20240107",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_window_options(p)
    p.set_defaults(handler=cmd_top, days=None, top=None, job=None)

    p = sub.add_parser("top", help="top K songs per country and per user over N days",
                       description="The generic window: country_topK[_Ndays]_D.txt and "
                       "user_topK[_Ndays]_D.txt. top50 is --days 7 --top 50.",
                       epilog="examples:\n  mapreduce top --logs logs --out out --days 30 --top 10"
                       "\n  mapreduce top --job jobs.yearly_top10:YearlyTop10 --logs logs --out out",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--days", type=int, default=None, help="window length in days (default 7)")
    p.add_argument("--top", type=int, default=None, help="songs kept per group (default 50)")
    p.add_argument("--job", default=None, metavar="MODULE:CLASS",
                   help="a WindowJob class giving the defaults for --days and --top")
    add_window_options(p)
    p.set_defaults(handler=cmd_top)

    p = sub.add_parser("generate", help="write deterministic synthetic listen logs",
                       description="Seeded synthetic logs with realistic skew and 0.1% corrupt "
                       "lines (also scripts/generate_logs.py).",
                       epilog="example:\n  mapreduce generate --out logs --days 7 "
                       "--lines-per-day 100000",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    from jobs.generate import add_arguments

    add_arguments(p)
    p.set_defaults(handler=cmd_generate)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def backend_from_args(args: argparse.Namespace):
    from mapreduce.executors import make_backend

    try:
        return make_backend(args.executor, args.workers, scheduler=args.scheduler)
    except ImportError as exc:
        raise UsageError(str(exc)) from None


def cmd_run(args: argparse.Namespace) -> int:
    from mapreduce.fsutil import ensure_writable_folder
    from mapreduce.job import ArrayJob, load_job
    from mapreduce.runner import DEFAULT_REDUCERS, run_job

    try:
        job = load_job(args.job)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for path in args.inputs:
        if not os.path.isfile(path):
            raise UsageError(f"input {path} does not exist or is not a regular file")
        if not os.access(path, os.R_OK):
            raise UsageError(f"input {path} is not readable")
    # an unwritable --out is a bad command line (exit 2), not an OSError once the run started
    ensure_writable_folder(args.out, "output")
    name = job.name or "output"
    output = os.path.join(args.out, name if isinstance(job, ArrayJob) else f"{name}.tsv")
    with backend_from_args(args) as backend:
        result = run_job(args.job, args.inputs, output, backend,
                         reducers=args.reducers or DEFAULT_REDUCERS, split_size=args.split_size,
                         quiet=args.quiet)
    r = result.report
    print(f"{result.output}: {r['records_output']} records from {r['lines']} lines "
          f"in {r['wall_seconds']:.1f}s (report: {result.output}.report.json)")
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    from jobs.store import DEFAULT_PARTITIONS, LockBusy
    from jobs.topk import WindowJob, parse_date, run_window_job

    job_cls: type[WindowJob] = WindowJob
    if args.job:
        module_name, _, cls_name = args.job.partition(":")
        try:
            job_cls = getattr(importlib.import_module(module_name), cls_name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise UsageError(f"cannot load window job {args.job!r}: {exc}") from None
        if not (isinstance(job_cls, type) and issubclass(job_cls, WindowJob)):
            raise UsageError(f"{args.job!r} is not a WindowJob class")
    job = job_cls(args.days, args.top)
    date = parse_date(args.date) if args.date else None
    with backend_from_args(args) as backend:
        try:
            summary = run_window_job(job, args.logs, args.out, backend, date=date,
                                     store=args.store, strict=args.strict, quiet=args.quiet,
                                     wait=not args.no_wait, split_size=args.split_size,
                                     partitions=args.reducers or DEFAULT_PARTITIONS)
        except LockBusy as exc:
            raise JobError(str(exc)) from None
    files = summary["files"]
    print(f"window {summary['window']['first']} .. {summary['window']['last']}: "
          f"{len(summary['days_used'])} day(s), {summary['input_lines_read']} lines read, "
          f"{sum(summary['corrupt_lines'].values())} corrupt")
    print(f"  {files['country']}\n  {files['user']}\n  {files['summary']}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from jobs.generate import generate
    from jobs.topk import parse_date

    if args.days < 1 or args.lines_per_day < 0:
        raise UsageError("--days must be at least 1 and --lines-per-day at least 0")
    if (args.users is not None and args.users < 1) or (args.songs is not None and args.songs < 1):
        raise UsageError("--users and --songs must be at least 1")
    if not 0 <= args.corrupt_share <= 1:
        raise UsageError("--corrupt-share must be between 0 and 1")
    end = parse_date(args.end, "--end") if args.end else dt.date(2024, 1, 7)
    paths = generate(args.out, days=args.days, lines_per_day=args.lines_per_day, end=end,
                     seed=args.seed, users=args.users, songs=args.songs,
                     corrupt_share=args.corrupt_share)
    print(f"wrote {len(paths)} log(s) to {args.out}: {os.path.basename(paths[0])} .. "
          f"{os.path.basename(paths[-1])}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "handler", None):
            parser.print_help()
            return 2
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            stream=sys.stderr)
        if not args.verbose:
            # distributed logs every worker, nanny and connection it starts at INFO: a page of it
            # per run with --executor dask. Its warnings (a worker lost, say) still show. Its
            # import sets its loggers' levels from dask's config, so the setting goes there.
            os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
        return args.handler(args)
    except UsageError as exc:
        _error(str(exc))
        return 2
    except JobError as exc:
        _error(str(exc))
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        _error(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug still ends in one line; -v shows where
        log.debug("unexpected error", exc_info=True)
        _error(f"internal error, please report it: {type(exc).__name__}: {exc} "
               "(run with -v for the traceback)")
        return 1


def _error(message: str) -> None:
    """One line whatever the message holds: a worker's exception text may span several."""
    print("error: " + " ".join(part.strip() for part in message.splitlines() if part.strip()),
          file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
