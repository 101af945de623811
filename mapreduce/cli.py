"""The ``mapreduce`` command line.

The framework's own command is ``run``; every other command comes from the ``mapreduce.commands``
entry-point group (``NAME = module:register``, ``register(subparsers)`` adding one sub-command
whose ``handler(args) -> exit code`` raises UsageError / JobError like ``run``). The project's
jobs add ``top50``, ``top``, ``generate``, ``watch`` and ``bench`` that way; a package of one's
own adds commands the same way, and a command whose module cannot be imported is left out.

Every command parses its arguments, runs, and turns any expected failure into one line on stderr:
exit 2 for a bad command line, 1 for a run that failed, 130 when interrupted. ``-v`` (and
``--executor inline``) also print the failing job's traceback, its file and line included.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import traceback
from importlib import metadata
from typing import Any

from mapreduce.errors import JobError, UsageError

log = logging.getLogger("mapreduce")
COMMAND_GROUP = "mapreduce.commands"

EXAMPLES = """\
examples:
  mapreduce run jobs.song_plays:SongPlays logs/*.log --out plays --reducers 4
  mapreduce run ./my_job.py:MyJob logs/*.log --out out
  mapreduce run jobs.distinct_listeners:DistinctListeners --logs logs --out out
  mapreduce run JOB --help        (the job's own options)
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
    p.add_argument("--scheduler", default=None,
                   help="with --executor dask: tcp://HOST:8786 (default $DASK_SCHEDULER_ADDRESS; "
                        "none: a local cluster for this run)")
    p.add_argument("--reducers", type=positive_int, default=None, help=reducers_help)
    p.add_argument("--split-size", type=parse_size, default="64M",
                   help="bytes per map task, e.g. 64M (default)")
    p.add_argument("--quiet", action="store_true", help="no progress bars, warnings and errors only")


def add_report_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--report", default=None, metavar="FILE.html",
                   help="also write a page of the run: task timeline, memory, input days")


def add_ops_options(p: argparse.ArgumentParser) -> None:
    """What an operator running a windowed job for a year sets (see the README's "Running it
    for a year")."""
    g = p.add_argument_group("operations")
    g.add_argument("--keep-days", type=positive_int, default=None, metavar="N",
                   help="after a successful run keep the N newest days in the store (default: "
                        "the longest window computed on it); a window's own days always stay")
    g.add_argument("--keep-outputs", type=positive_int, default=None, metavar="N",
                   help="after a successful run keep the files of the N newest dates in --out "
                        "(default: all)")
    g.add_argument("--metrics-file", default=None, metavar="FILE.prom",
                   help="write Prometheus metrics of each run there (node_exporter's textfile "
                        "collector)")
    g.add_argument("--allow-links", action="store_true",
                   help="read logs that resolve outside the logs folder (refused by default)")
    g.add_argument("--no-samples", action="store_true",
                   help="keep no corrupt-line samples in the store, counts only")


def add_window_options(p: argparse.ArgumentParser, *, inputs_required: bool = True) -> None:
    p.add_argument("--logs", required=inputs_required, help="folder of dated input files")
    p.add_argument("--date", default=None,
                   help="last day of the window, YYYYMMDD or YYYY-MM-DD (default: newest input)")
    p.add_argument("--store", default=None, help="per-day results cache (default: OUT/store)")
    p.add_argument("--strict", action="store_true",
                   help="fail, writing nothing, when a day of the window has no input")
    p.add_argument("--no-wait", action="store_true",
                   help="exit at once if another job holds the store's lock")
    p.add_argument("--recompute", nargs="+", default=None, metavar="DATE",
                   help="reduce these days again whatever the store holds (YYYYMMDD ...), or "
                        "'all' for every day of the window")
    add_ops_options(p)


def add_job_options(p: argparse.ArgumentParser, cls: type) -> None:
    """The job's declared options, as ``--NAME`` arguments (default None: the job's own)."""
    if not cls.options:
        return
    group = p.add_argument_group(f"options of {cls.__name__}")
    for option in cls.options:
        group.add_argument(option.flag, dest=f"job_{option.name}", type=option.type, default=None,
                           metavar=option.name.upper(),
                           help=f"{option.help} (default {option.default})")


def job_params(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    return {o.name: getattr(args, f"job_{o.name}") for o in cls.options
            if getattr(args, f"job_{o.name}", None) is not None}


def build_job(cls: type, params: dict[str, Any]) -> Any:
    try:
        return cls(**params)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def report_path(args: argparse.Namespace) -> str | None:
    """``--report``, checked before any work: its folder must exist and be writable."""
    if not args.report:
        return None
    folder = os.path.dirname(os.path.abspath(args.report))
    if os.path.isdir(args.report):
        raise UsageError(f"--report {args.report} is a folder; give a file name such as run.html")
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--report: folder {folder} does not exist or is not writable")
    return args.report


def backend_from_args(args: argparse.Namespace):
    from mapreduce.executors import make_backend

    scheduler = args.scheduler
    if scheduler and args.executor != "dask":
        raise UsageError("--scheduler is only used with --executor dask")
    if args.executor == "dask":
        scheduler = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    try:
        return make_backend(args.executor, args.workers, scheduler=scheduler, quiet=args.quiet)
    except ImportError as exc:
        raise UsageError(str(exc)) from None


def recompute_days(values: list[str] | None) -> frozenset[Any] | str:
    from mapreduce.inputs import parse_date

    if not values:
        return frozenset()
    if values == ["all"]:
        return "all"
    return frozenset(parse_date(v, "--recompute") for v in values)


def ops_from_args(args: argparse.Namespace) -> Any:
    from mapreduce.retention import Retention
    from mapreduce.windowed import Ops

    return Ops(allow_links=args.allow_links, recompute=recompute_days(getattr(args, "recompute",
                                                                              None)),
               samples=not args.no_samples,
               retention=Retention(keep_days=args.keep_days, keep_outputs=args.keep_outputs))


def run_window_command(job: Any, ref: str, args: argparse.Namespace) -> int:
    """Run a windowed job from parsed window options and print where its files are."""
    from mapreduce.inputs import parse_date
    from mapreduce.metrics import check_path, write_metrics
    from mapreduce.store import DEFAULT_PARTITIONS, LockBusy
    from mapreduce.windowed import run_window_job

    date = parse_date(args.date) if args.date else None
    html = report_path(args)
    metrics = check_path(args.metrics_file)
    ops = ops_from_args(args)
    store = args.store or os.path.join(args.out, "store")
    summary = None
    try:
        with backend_from_args(args) as backend:
            try:
                summary = run_window_job(job, args.logs, args.out, backend, date=date,
                                         job_ref=ref, html_report=html, ops=ops,
                                         store=store, strict=args.strict, quiet=args.quiet,
                                         wait=not args.no_wait, split_size=args.split_size,
                                         partitions=args.reducers or DEFAULT_PARTITIONS)
            except LockBusy as exc:
                raise JobError(str(exc)) from None
    finally:
        if metrics and os.path.isdir(store):  # a bad command line (no store yet) writes none
            # labelled by the command (top50, top, run), what an operator's alert names
            write_metrics(metrics, getattr(args, "command", None) or job.name, summary=summary,
                          store=store, out=args.out)
    print(f"window {summary['window']['first']} .. {summary['window']['last']}: "
          f"{len(summary['days_used'])} day(s), {summary['input_lines_read']} lines read, "
          f"{sum(summary['corrupt_lines'].values())} corrupt")
    print("".join(f"  {path}\n" for path in summary["files"].values()), end="")
    return 0


def _add_run_command(sub: Any, job_cls: type | None) -> None:
    from mapreduce.windowed import WindowJob

    windowed = job_cls is not None and issubclass(job_cls, WindowJob)
    p = sub.add_parser("run", help="run any job: MODULE:CLASS or FILE.py:CLASS",
                       description="Run a job. A plain job runs over INPUT files: OUT/<job>.tsv "
                       "(record jobs) or OUT/<job>/ (array jobs), and a .report.json beside it. "
                       "A windowed job runs over a --logs folder of dated inputs for the window "
                       "ending on --date, caching each day's result in --store. "
                       "`mapreduce run JOB --help` lists the job's own options.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", metavar="JOB", help="MODULE:CLASS (importable) or FILE.py:CLASS")
    if windowed:
        add_window_options(p)
    else:
        p.add_argument("inputs", nargs="*" if job_cls is None else "+", metavar="INPUT",
                       help="input files (plain jobs)")
    p.add_argument("--out", required=True, help="output folder")
    add_run_options(p, reducers_help="partitions (default 8; a new store's: 64)")
    add_report_option(p)
    if job_cls is not None:
        add_job_options(p, job_cls)
    p.set_defaults(handler=cmd_run, job_cls=job_cls)


def cmd_run(args: argparse.Namespace) -> int:
    from mapreduce.fsutil import ensure_writable_folder
    from mapreduce.job import ArrayJob, JobSpec, default_name, resolve_ref
    from mapreduce.runner import DEFAULT_REDUCERS, run_job
    from mapreduce.windowed import WindowJob

    cls = args.job_cls
    ref = resolve_ref(args.job)
    job = build_job(cls, job_params(args, cls))
    if job.name is None:
        job.name = default_name(ref)
    if isinstance(job, WindowJob):
        return run_window_command(job, ref, args)
    for path in args.inputs:
        if not os.path.isfile(path):
            raise UsageError(f"input {path} does not exist or is not a regular file")
        if not os.access(path, os.R_OK):
            raise UsageError(f"input {path} is not readable")
    # an unwritable --out is a bad command line (exit 2), not an OSError once the run started
    ensure_writable_folder(args.out, "output")
    output = os.path.join(args.out, job.name if isinstance(job, ArrayJob) else f"{job.name}.tsv")
    spec = JobSpec(ref, tuple(sorted(job.params().items())))
    html = report_path(args)
    with backend_from_args(args) as backend:
        result = run_job(spec, args.inputs, output, backend,
                         reducers=args.reducers or DEFAULT_REDUCERS, split_size=args.split_size,
                         quiet=args.quiet, html_report=html)
    r = result.report
    print(f"{result.output}: {r['records_output']} records from {r['lines']} lines "
          f"in {r['wall_seconds']:.1f}s (report: {result.output}.report.json)")
    return 0


def _job_after_run(argv: list[str]) -> str | None:
    """The JOB of ``[-v] run JOB ...``: read before parsing, since its options are the job's."""
    rest = [a for a in argv if a not in ("-v", "--verbose")]
    if len(rest) >= 2 and rest[0] == "run" and not rest[1].startswith("-"):
        return rest[1]
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    from mapreduce.job import job_class, resolve_ref

    job_cls = None
    ref = _job_after_run(list(sys.argv[1:] if argv is None else argv))
    if ref is not None:
        try:
            job_cls = job_class(resolve_ref(ref))  # `my_job:MyJob` may be a file in this folder
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    missing: list[str] = []
    commands = _command_entry_points(missing)
    parser = _Parser(prog="mapreduce", description="A multiprocessing MapReduce framework and "
                     "its jobs.", formatter_class=argparse.RawDescriptionHelpFormatter,
                     epilog=EXAMPLES + (f"\ncommands that could not be loaded: "
                                        f"{'; '.join(missing)}\n" if missing else ""))
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and the traceback of a failure")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_run_command(sub, job_cls)
    for register in commands:
        register(sub)
    for command in sub.choices.values():
        add_common_options(command)
    return parser


def octal_mask(text: str) -> int:
    try:
        value = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal umask like 027") from None
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"{text!r} is not a umask between 000 and 777")
    return value


def add_common_options(p: argparse.ArgumentParser) -> None:
    """Options every command has (a command may have declared some itself, as watch does)."""
    g = p.add_argument_group("logging and files")
    options: list[tuple[str, dict[str, Any]]] = [
        ("--log-level", dict(choices=("debug", "info", "warning", "error"), default=None,
                             help="lowest level logged (default info; warning with --quiet; "
                                  "debug with -v)")),
        ("--log-file", dict(default=None, help="also log to this file")),
        ("--umask", dict(type=octal_mask, default=None, metavar="OCTAL",
                         help="mode mask of every file and folder written (default: the "
                              "current umask, plus no read access for group or others where "
                              "the --logs folder gives them none)")),
    ]
    for flag, kw in options:
        try:
            g.add_argument(flag, **kw)
        except argparse.ArgumentError:
            pass  # the command declares it itself


def apply_umask(args: argparse.Namespace) -> None:
    """Files made from the logs are no more readable than the logs folder: where it denies
    group or others reading, so does everything written (store, outputs, reports, metrics)."""
    import stat

    from mapreduce.fsutil import set_umask

    mask = getattr(args, "umask", None)
    logs = getattr(args, "logs", None)
    if mask is None and isinstance(logs, str) and os.path.isdir(logs):
        mode = os.stat(logs).st_mode
        current = os.umask(0o022)
        os.umask(current)
        mask = (current | (0 if mode & stat.S_IRGRP else 0o070)
                | (0 if mode & stat.S_IROTH else 0o007))
    if mask is not None:
        set_umask(mask)


def log_level(args: argparse.Namespace) -> int:
    if getattr(args, "log_level", None):
        return getattr(logging, args.log_level.upper())
    quiet = getattr(args, "quiet", False) and not args.verbose
    return logging.DEBUG if args.verbose else logging.WARNING if quiet else logging.INFO


def check_log_file(path: str | None) -> None:
    if path:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise UsageError(f"--log-file: folder {folder} does not exist or is not writable")


def _command_entry_points(missing: list[str]) -> list[Any]:
    loaded = []
    for ep in sorted(metadata.entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        try:
            loaded.append(ep.load())
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not take the CLI down
            missing.append(f"{ep.name} ({type(exc).__name__}: {exc})")
    return loaded


def _version() -> str:
    try:
        return metadata.version("mapreduce-top50")
    except metadata.PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args: argparse.Namespace | None = None
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        if not getattr(args, "handler", None):
            parser.print_help()
            return 2
        quiet = getattr(args, "quiet", False) and not args.verbose
        apply_umask(args)
        check_log_file(getattr(args, "log_file", None))
        handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
        if getattr(args, "log_file", None):
            handlers.append(logging.FileHandler(args.log_file, encoding="utf-8"))
        logging.basicConfig(level=log_level(args), handlers=handlers,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if not args.verbose:
            # distributed logs every worker, nanny and connection it starts at INFO: a page of it
            # per run with --executor dask. Its warnings (a worker lost, say) still show. Its
            # import sets its loggers' levels from dask's config, so the setting goes there.
            os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error" if quiet else "warning")
        return args.handler(args)
    except UsageError as exc:
        _error(str(exc))
        return 2
    except JobError as exc:
        _traceback_if_asked(args, exc)
        _error(str(exc))
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        _traceback_if_asked(args, exc)
        _error(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug still ends in one line; -v shows where
        log.debug("unexpected error", exc_info=True)
        _error(f"internal error, please report it: {type(exc).__name__}: {exc} "
               "(run with -v for the traceback)")
        return 1


def _traceback_if_asked(args: argparse.Namespace | None, exc: BaseException) -> None:
    """Under -v, or with the inline executor when a task raised (debugging a job), the whole
    chain: the job's own exception with its file and line, then where the framework caught it.
    A task's OSError (a full disk) is the machine's problem, not the job's: one line is enough."""
    if args is None:
        return
    cause = exc.__cause__
    if args.verbose or (getattr(args, "executor", None) == "inline" and cause is not None
                        and not isinstance(cause, OSError)):
        traceback.print_exception(exc, file=sys.stderr)


def _error(message: str) -> None:
    """One line whatever the message holds: a worker's exception text may span several."""
    print("error: " + " ".join(part.strip() for part in message.splitlines() if part.strip()),
          file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
