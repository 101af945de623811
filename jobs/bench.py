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
from jobs.bench_runs import (NEXT_DAY, WEEK_END, Case, _progress, daily_command,
                             duckdb_command, ensure_logs, log_path, measure, top50_command)


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
    p.add_argument("--json", default=None, help="results file (default DATA/bench.json)")
    p.add_argument("--skip-duckdb", action="store_true",
                   help="no DuckDB runs: no ratios and no correctness check")
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
    result = run_bench(args.data, args.lines_per_day, runs=args.runs, workers=workers,
                       split_size=args.split_size, duckdb=not args.skip_duckdb)
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
              duckdb: bool = True) -> dict[str, Any]:
    """Run every case; returns the results (what bench.json holds). Raises JobError when an
    output of ours is not byte-identical to DuckDB's."""
    from mapreduce.store import Store
    from jobs.top50 import Top50

    data = os.path.abspath(data)  # the runs' commands must not depend on a working folder
    os.makedirs(data, exist_ok=True)
    params = ensure_logs(data, lines_per_day)
    work = os.path.join(data, "runs")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    week = [WEEK_END - dt.timedelta(days=i) for i in range(6, -1, -1)]
    week_logs = [log_path(data, d) for d in week]
    next_logs = [log_path(data, d + dt.timedelta(days=1)) for d in week]

    cases: dict[str, Case] = {
        "cold": Case("cold", "top50 of the week from raw logs, empty store", 7 * lines_per_day),
        "warm": Case("warm", "top50 of the next day, 7 days in the store: 1 reduction + window",
                     lines_per_day),
        "daily-1w": Case("daily-1w", "daily reduction of one log, 1 worker", lines_per_day),
        "daily-2w": Case("daily-2w", "daily reduction of one log, 2 workers", lines_per_day),
    }
    if duckdb:
        cases["duckdb"] = Case("duckdb", f"the week in DuckDB SQL, {workers} thread(s)",
                               7 * lines_per_day)

    def timed(case: Case, i: int, command: list[str]) -> None:
        _progress(f"{case.name} run {i + 1}/{runs}")
        case.command = command
        console = os.path.join(work, f"{case.name}-{i + 1}.console.txt")
        wall, peak = measure(f"{case.name} run {i + 1}", command, console)
        case.walls.append(wall)
        case.peaks.append(peak)

    # DuckDB first: its files are the reference every run of ours is checked against
    reference: dict[str, str] | None = None
    next_reference: dict[str, str] | None = None
    if duckdb:
        names = Top50().output_names(WEEK_END)
        for i in range(runs):
            out = os.path.join(work, f"duckdb-{i + 1}")
            os.makedirs(out)
            timed(cases["duckdb"], i, duckdb_command(week_logs, out, names, workers))
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
                duckdb_command(next_logs, out, Top50().output_names(NEXT_DAY), workers),
                os.path.join(work, "duckdb-next.console.txt"))
        next_reference = output_files(out, NEXT_DAY)

    warm_store = os.path.join(work, "warm-store")
    for i in range(runs):
        run_dir = os.path.join(work, f"cold-{i + 1}")
        out, store = os.path.join(run_dir, "out"), os.path.join(run_dir, "store")
        timed(cases["cold"], i, top50_command(data, out, store, WEEK_END, workers, split_size))
        if reference:
            compare_outputs(output_files(out, WEEK_END), reference, f"cold run {i + 1}")
        if i == runs - 1:
            os.replace(store, warm_store)  # days 01..07 reduced: the state the warm case needs
        shutil.rmtree(run_dir)

    next_dir = Store(warm_store, step=Top50().steps()[0].name).day_dir(NEXT_DAY)
    for i in range(runs):
        shutil.rmtree(next_dir, ignore_errors=True)  # so every warm run really reduces one day
        out = os.path.join(work, f"warm-{i + 1}")
        timed(cases["warm"], i, top50_command(data, out, warm_store, NEXT_DAY, workers,
                                              split_size))
        if next_reference:
            compare_outputs(output_files(out, NEXT_DAY), next_reference, f"warm run {i + 1}")
        shutil.rmtree(out)

    for name, w in (("daily-1w", 1), ("daily-2w", 2)):
        for i in range(runs):
            out = os.path.join(work, f"{name}-{i + 1}")
            timed(cases[name], i, daily_command(data, out, w, split_size))
            shutil.rmtree(out)

    shutil.rmtree(work, ignore_errors=True)  # everything passed: the runs' files are not needed
    return results(cases, params, data, runs=runs, workers=workers, split_size=split_size,
                   checked=duckdb)
