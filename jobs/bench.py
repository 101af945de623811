"""``mapreduce bench``: our top-50 job against DuckDB on a realistic week.

    DIR/                      (--data, default bench-data)
      params.json             how the logs were generated, and their sizes: reused when they match
      logs/                   listen-20240101.log .. listen-20240108.log (jobs.generate)
      runs/                   each run's outputs, store and console log; removed when all is done
      bench.json              the results (--json)

Cases, each run ``--runs`` times in a subprocess of its own, so that the peak memory sampled (the
sum of the resident memory of the process and all its descendants, every 0.1 s) is that run's:

    cold       top50 for 2024-01-07 from the raw logs, with an empty store
    warm       top50 for 2024-01-08 with days 01..07 in the store: one daily reduction + the window
    daily-1w   the daily reduction of one log with 1 worker
    daily-2w   the same with 2 workers (the core-scaling ratio is their throughputs' ratio)
    duckdb     the week of 2024-01-07 in SQL (jobs.bench_duckdb), PRAGMA threads = --workers

Every output of ours must be byte-identical to DuckDB's (the warm one to DuckDB's window ending
2024-01-08, computed once, untimed) before any time is printed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import shutil
from typing import Any

import orjson

from mapreduce.errors import UsageError
from mapreduce.fsutil import atomic_write_bytes
from jobs.bench_results import FULL_SCALE, compare_outputs, output_files, render, results
from jobs.bench_runs import (JOBS, NEXT_DAY, WEEK_END, Case, _progress, check_baseline,
                             compressed_logs, daily_command, duckdb_command, duckdb_reader, ensure_logs,
                             job_command, job_lines, log_path, measure, top50_command,
                             write_artists)


def register(sub: argparse._SubParsersAction) -> None:
    from mapreduce.cli import parse_size, positive_int
    from mapreduce.splits import DEFAULT_SPLIT_SIZE

    p = sub.add_parser(
        "bench", help="benchmark the top-50 job against DuckDB",
        description="Generate (or reuse) a realistic week of logs, then time the cold and warm "
        "top-50 job, the daily reduction with 1 and 2 workers, and DuckDB doing the same week; "
        "each case in its own process, medians of --runs runs, peak memory of the process "
        "tree. Outputs must be byte-identical to DuckDB's before any time is shown.",
        epilog="examples:\n  mapreduce bench                       # full scale: 30M lines/day\n"
        "  mapreduce bench --data /tmp/b --lines-per-day 200000 --runs 1",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="bench-data",
                   help="folder for the logs, the runs and the results (default bench-data)")
    p.add_argument("--lines-per-day", type=positive_int, default=FULL_SCALE,
                   help=f"lines per log (default {FULL_SCALE}, the real service)")
    p.add_argument("--runs", type=positive_int, default=3, help="runs per case (default 3)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="worker processes for ours, threads for DuckDB (default: physical cores)")
    p.add_argument("--split-size", type=parse_size, default=DEFAULT_SPLIT_SIZE,
                   help="bytes per map task for our runs (default 64M, the job's default; a "
                        "small scale needs a smaller one for the daily scaling case to have "
                        "more than one map task)")
    p.add_argument("--id-width", choices=("realistic", "narrow", "wide"), default="realistic",
                   help="ids of the generated logs: realistic (default: most 9-10 digits, a few "
                        "up to 19), narrow (up to 8 digits), wide (a third 16-19 digits)")
    p.add_argument("--jobs", action="store_true",
                   help="also time one day of each windowed job of jobs/ (top50, "
                        "distinct_listeners, song_countries, artist_countries) on the same log")
    p.add_argument("--compressed", action="store_true",
                   help="also time one day of top50 from the plain log, a gzip copy and a zstd "
                        "copy of it (made once in DATA/compressed)")
    p.add_argument("--only-extra", action="store_true",
                   help="with --jobs or --compressed: only those cases, not the top-50 ones")
    p.add_argument("--json", default=None, help="results file (default DATA/bench.json)")
    p.add_argument("--skip-duckdb", action="store_true",
                   help="no DuckDB runs: no ratios and no correctness check")
    p.add_argument("--baseline", default=None, metavar="CHECKOUT",
                   help="another checkout of this project (e.g. `git worktree add /tmp/old "
                        "v1`): its cold and warm top50 run interleaved with ours on the same "
                        "logs, outputs compared byte for byte (needs a non-editable install)")
    p.add_argument("--long-window", action="store_true",
                   help="instead: the long-window case (jobs.bench_long), a store built from "
                        "the generator's model, the yearly top 10's window stage timed")
    p.add_argument("--long-rate", type=positive_int, default=300_000,
                   help="lines a day of the long-window lengths (default 300000)")
    p.add_argument("--long-days", default="30,90,180,365",
                   help="window lengths at --long-rate (default 30,90,180,365)")
    p.add_argument("--long-rates", default="1000000,3000000",
                   help="lines a day compared at --long-rate-days days (default 1000000,3000000)")
    p.add_argument("--long-rate-days", type=positive_int, default=30,
                   help="window length of the rate comparison (default 30)")
    p.set_defaults(handler=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from mapreduce.executors import default_workers

    if os.path.exists(args.data) and not os.path.isdir(args.data):
        raise UsageError(f"--data {args.data} exists and is not a folder")
    try:
        os.makedirs(args.data, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --data folder {args.data}: {exc.strerror}") from None
    if not os.access(args.data, os.W_OK | os.X_OK):
        raise UsageError(f"--data folder {args.data} is not writable")
    if args.long_window:
        return _cmd_long(args, default_workers())
    if not args.skip_duckdb and importlib.util.find_spec("duckdb") is None:
        raise UsageError("duckdb is not installed: pip install '.[bench]', or pass --skip-duckdb")
    workers = args.workers or default_workers()
    json_path = args.json or os.path.join(args.data, "bench.json")
    if os.path.isdir(json_path):
        raise UsageError(f"--json {json_path} is a folder")
    if args.baseline and not os.path.isdir(os.path.join(args.baseline, "mapreduce")):
        raise UsageError(f"--baseline {args.baseline} is not a checkout of this project")
    result = run_bench(args.data, args.lines_per_day, runs=args.runs, workers=workers,
                       split_size=args.split_size, duckdb=not args.skip_duckdb,
                       baseline=args.baseline and os.path.abspath(args.baseline),
                       id_width=args.id_width, jobs=args.jobs, compressed=args.compressed,
                       core=not args.only_extra)
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    atomic_write_bytes(json_path, orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    print(render(result))
    print(f"results: {json_path}")
    return 0


def _cmd_long(args: argparse.Namespace, workers: int) -> int:
    from jobs.bench_long import run_long
    from jobs.bench_results import machine, render_long

    try:
        lengths = [int(x) for x in args.long_days.split(",")]
        rates = [int(x) for x in args.long_rates.split(",")]
    except ValueError:
        raise UsageError("--long-days and --long-rates are comma-separated integers") from None
    if not lengths or min(lengths + rates) < 1:
        raise UsageError("--long-days and --long-rates must be positive")
    json_path = args.json or os.path.join(args.data, "bench-long.json")
    result = run_long(os.path.abspath(args.data), rate=args.long_rate, lengths=lengths,
                      rates=rates, rate_days=args.long_rate_days,
                      workers=args.workers or workers)
    result["machine"] = machine()
    atomic_write_bytes(json_path, orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    print(render_long(result))
    print(f"results: {json_path}")
    return 0


def run_bench(data: str, lines_per_day: int, *, runs: int, workers: int, split_size: int,
              duckdb: bool = True, baseline: str | None = None,
              id_width: str = "realistic", jobs: bool = False,
              compressed: bool = False, core: bool = True) -> dict[str, Any]:
    """Run every case; returns the results (what bench.json holds). Raises JobError when an
    output of ours is not byte-identical to DuckDB's."""
    from jobs.top50 import Top50

    data = os.path.abspath(data)  # the runs' commands must not depend on a working folder
    os.makedirs(data, exist_ok=True)
    params = ensure_logs(data, lines_per_day, id_width)
    work = os.path.join(data, "runs")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    week = [WEEK_END - dt.timedelta(days=i) for i in range(6, -1, -1)]
    week_logs = [log_path(data, d) for d in week]
    next_logs = [log_path(data, d + dt.timedelta(days=1)) for d in week]

    duckdb = duckdb and core
    cases: dict[str, Case] = {} if not core else {
        "cold": Case("cold", "top50 of the week from raw logs, empty store", 7 * lines_per_day),
        "warm": Case("warm", "top50 of the next day, 7 days in the store: 1 reduction + window",
                     lines_per_day),
        "daily-1w": Case("daily-1w", "daily reduction of one log, 1 worker", lines_per_day),
        "daily-2w": Case("daily-2w", "daily reduction of one log, 2 workers", lines_per_day),
    }
    if duckdb:
        cases["duckdb"] = Case("duckdb", f"the week in DuckDB SQL, {workers} thread(s)",
                               7 * lines_per_day)
    if baseline and core:
        check_baseline(baseline)
        for name in ("cold", "warm"):
            cases[f"{name}-baseline"] = Case(f"{name}-baseline", f"{name}, the code in {baseline}",
                                             cases[name].lines)

    def timed(case: Case, i: int, command: list[str], root: str | None = None) -> None:
        _progress(f"{case.name} run {i + 1}/{runs}")
        case.command = command
        console = os.path.join(work, f"{case.name}-{i + 1}.console.txt")
        wall, peak = measure(f"{case.name} run {i + 1}", command, console,
                             **({"root": root} if root else {}))
        case.walls.append(wall)
        case.peaks.append(peak)

    # DuckDB first: its files are the reference every run of ours is checked against
    reference: dict[str, str] | None = None
    next_reference: dict[str, str] | None = None
    reader = "csv"
    if duckdb:
        reader, why = duckdb_reader(sorted(set(week_logs + next_logs)))
        if why:
            _progress(f"DuckDB's CSV reader cannot follow the rule on these logs ({why}): "
                      "timing its exact BLOB reader instead")
        params = {**params, "duckdb_reader": reader, "duckdb_csv_limit": why}
        names = Top50().output_names(WEEK_END)
        for i in range(runs):
            out = os.path.join(work, f"duckdb-{i + 1}")
            os.makedirs(out)
            timed(cases["duckdb"], i, duckdb_command(week_logs, out, names, workers, reader))
            files = output_files(out, WEEK_END)
            if reference is None:
                reference = files
            else:
                compare_outputs(files, reference, f"DuckDB run {i + 1} against run 1")
                shutil.rmtree(out)
        _progress("duckdb: the window ending the next day, once, untimed (checks warm)")
        out = os.path.join(work, "duckdb-next")
        os.makedirs(out)
        measure("duckdb (next day's window)",
                duckdb_command(next_logs, out, Top50().output_names(NEXT_DAY), workers, reader),
                os.path.join(work, "duckdb-next.console.txt"))
        next_reference = output_files(out, NEXT_DAY)

    # ours and the baseline's (if any) alternate, so that a drift of the machine's speed
    # during the benchmark weighs on both alike
    builds = [("", None)] + ([("-baseline", baseline)] if baseline else [])
    for i in range(runs if core else 0):
        for suffix, root in builds:
            run_dir = os.path.join(work, f"cold{suffix}-{i + 1}")
            out, store = os.path.join(run_dir, "out"), os.path.join(run_dir, "store")
            timed(cases["cold" + suffix], i,
                  top50_command(data, out, store, WEEK_END, workers, split_size), root)
            files = output_files(out, WEEK_END)
            if reference:
                compare_outputs(files, reference, f"cold{suffix} run {i + 1}")
            elif suffix:  # no DuckDB: the baseline's files must still be ours
                compare_outputs(files, output_files(os.path.join(work, f"cold-{i + 1}", "out"),
                                                    WEEK_END), f"cold{suffix} run {i + 1}")
            if i == runs - 1:  # days 01..07 reduced: the state the warm case needs
                os.replace(store, os.path.join(work, f"warm{suffix}-store"))
        for suffix, _ in builds:
            shutil.rmtree(os.path.join(work, f"cold{suffix}-{i + 1}"))

    step = Top50().steps()[0].name
    for i in range(runs if core else 0):
        for suffix, root in builds:
            warm_store = os.path.join(work, f"warm{suffix}-store")
            # every warm run reduces one day; a baseline may keep its days at the store's top
            # level (store format 3)
            for stale in (os.path.join(warm_store, step, f"day-{NEXT_DAY:%Y%m%d}"),
                          os.path.join(warm_store, f"day-{NEXT_DAY:%Y%m%d}")):
                shutil.rmtree(stale, ignore_errors=True)
            out = os.path.join(work, f"warm{suffix}-{i + 1}")
            timed(cases["warm" + suffix], i, top50_command(data, out, warm_store, NEXT_DAY,
                                                           workers, split_size), root)
            if next_reference:
                compare_outputs(output_files(out, NEXT_DAY), next_reference,
                                f"warm{suffix} run {i + 1}")
        for suffix, _ in builds:
            shutil.rmtree(os.path.join(work, f"warm{suffix}-{i + 1}"))

    for i in range(runs if core else 0):
        # interleaved, so that the machine's drift weighs on both sides of the scaling ratio
        for name, w in (("daily-1w", 1), ("daily-2w", 2)):
            out = os.path.join(work, f"{name}-{i + 1}")
            timed(cases[name], i, daily_command(data, out, w, split_size))
            shutil.rmtree(out)

    if jobs:
        artists = os.path.join(work, "artists.csv")
        write_artists(log_path(data, WEEK_END), artists)
        for name, job, _ in JOBS:
            cases[name] = Case(name, f"one day of {job} ({job_lines(job)} lines), 1-day window",
                               lines_per_day)
        for i in range(runs):  # interleaved, so that the machine's drift weighs on all alike
            for name, job, extra in JOBS:
                out = os.path.join(work, f"{name.replace(':', '-')}-{i + 1}")
                timed(cases[name], i, job_command(job, extra, os.path.dirname(log_path(
                    data, WEEK_END)), out, WEEK_END, workers, split_size, artists))
                shutil.rmtree(out)

    if compressed:
        folders = compressed_logs(data, WEEK_END)
        for kind in folders:
            cases[f"day-{kind}"] = Case(f"day-{kind}", f"one day of top50 from a {kind} log, "
                                        "fresh store, 1-day window", lines_per_day)
        for i in range(runs):
            for kind, folder in folders.items():
                out = os.path.join(work, f"day-{kind}-{i + 1}")
                timed(cases[f"day-{kind}"], i, job_command(
                    "jobs.top50:TopSongs", (), folder, out, WEEK_END, workers, split_size, ""))
                shutil.rmtree(out)

    shutil.rmtree(work, ignore_errors=True)  # everything passed: the runs' files are not needed
    return results(cases, params, data, runs=runs, workers=workers, split_size=split_size,
                   checked=duckdb)
