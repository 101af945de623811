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
import contextlib
import datetime as dt
import filecmp
import importlib.util
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import psutil

from mapreduce.errors import JobError, UsageError
from mapreduce.fsutil import atomic_write_bytes
from mapreduce.report import tree_rss

WEEK_END = dt.date(2024, 1, 7)
NEXT_DAY = dt.date(2024, 1, 8)   # the day that arrives for the warm case
DAYS = 8                          # 2024-01-01 .. 2024-01-08
SEED = 42
CORRUPT_SHARE = 0.001
PARAMS_FORMAT = 1
SAMPLE_SECONDS = 0.1
MIB = 1 << 20

#: the targets: (key, text, threshold)
TARGETS = (
    ("cold_vs_duckdb", "cold >= 3x faster than DuckDB", 3.0),
    ("warm_vs_duckdb", "warm >= 5x faster than DuckDB recomputing the week", 5.0),
    ("peak_rss_gib", "peak memory <= 1 GiB, cold and warm", 1.0),
    ("daily_scaling", "daily throughput 2 workers >= 1.8x 1 worker", 1.8),
)
FULL_SCALE = 30_000_000

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Case:
    name: str
    description: str
    lines: int                              # log lines the case reads
    walls: list[float] = field(default_factory=list)
    peaks: list[int] = field(default_factory=list)
    command: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    @property
    def peak(self) -> int:
        # the largest of the runs' peaks: a memory target is about the worst run, not the typical
        return max(self.peaks)


# ---------------------------------------------------------------------------------------------
# command line

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


# ---------------------------------------------------------------------------------------------
# data

def logs_dir(data: str) -> str:
    return os.path.join(data, "logs")


def log_path(data: str, day: dt.date) -> str:
    from jobs.listens import log_name

    return os.path.join(logs_dir(data), log_name(day))


def ensure_logs(data: str, lines_per_day: int) -> dict[str, Any]:
    """The eight logs for ``lines_per_day``: reused when params.json says they were generated
    with the same parameters and every file still has its recorded size, else generated."""
    from jobs.generate import generate

    wanted = {"format": PARAMS_FORMAT, "seed": SEED, "lines_per_day": lines_per_day,
              "corrupt_share": CORRUPT_SHARE, "end": f"{NEXT_DAY:%Y-%m-%d}", "days": DAYS}
    params_path = os.path.join(data, "params.json")
    try:
        with open(params_path, "rb") as f:
            known = orjson.loads(f.read())
    except (FileNotFoundError, orjson.JSONDecodeError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    sizes = known.get("sizes", {})
    if ({k: known.get(k) for k in wanted} == wanted and len(sizes) == DAYS
            and all(_size(os.path.join(logs_dir(data), n)) == s for n, s in sizes.items())):
        _progress(f"reusing the logs in {logs_dir(data)} ({lines_per_day} lines/day)")
        return known
    _progress(f"generating {DAYS} logs of {lines_per_day} lines in {logs_dir(data)}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(params_path)  # a half-finished generation must not look complete
    paths = generate(logs_dir(data), days=DAYS, lines_per_day=lines_per_day, end=NEXT_DAY,
                     seed=SEED, corrupt_share=CORRUPT_SHARE, force=True)
    params = {**wanted, "sizes": {os.path.basename(p): os.path.getsize(p) for p in paths}}
    atomic_write_bytes(params_path, orjson.dumps(params, option=orjson.OPT_INDENT_2) + b"\n")
    return params


def _size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


# ---------------------------------------------------------------------------------------------
# running and measuring

def _progress(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def _env() -> dict[str, str]:
    # the subprocesses import this very checkout, installed or not
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PROJECT_ROOT, env.get("PYTHONPATH")) if p)
    return env


def measure(label: str, command: list[str], console: str) -> tuple[float, int]:
    """Run ``command``; returns (wall seconds, peak resident bytes of its process tree).

    The tree's memory is summed every 0.1 s: a peak shorter than that can be missed, which at
    full scale (runs of tens of seconds) moves the figure by little."""
    with open(console, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=_env())
        try:
            ps = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:  # already finished
            ps = None
        peak = 0
        while True:
            if ps is not None:
                peak = max(peak, tree_rss(ps))
            try:
                proc.wait(timeout=SAMPLE_SECONDS)
                break
            except subprocess.TimeoutExpired:
                continue
        wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise JobError(f"{label} failed (exit {proc.returncode}): "
                       f"{_last_line(console)} (full output: {console})")
    return wall, peak


def _last_line(path: str) -> str:
    with open(path, "rb") as f:
        lines = f.read().decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "no output"


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


def duckdb_command(logs: list[str], out: str, top_names: dict[str, str],
                   threads: int) -> list[str]:
    from jobs.listens import ISO_CODES

    return _python("jobs.bench_duckdb", "--threads", str(threads), "--codes", ",".join(ISO_CODES),
                   "--country", os.path.join(out, top_names["country"]),
                   "--user", os.path.join(out, top_names["user"]), *logs)


def top50_command(data: str, out: str, store: str, day: dt.date, workers: int,
                  split_size: int) -> list[str]:
    return _python("mapreduce.cli", "top50", "--logs", logs_dir(data), "--out", out,
                   "--store", store, "--date", f"{day:%Y%m%d}", "--workers", str(workers),
                   "--split-size", str(split_size), "--quiet")


def daily_command(data: str, out: str, workers: int, split_size: int) -> list[str]:
    # exactly the reduction the store runs for a day (jobs.store.Store.reduce): same job, same
    # number of partitions; `mapreduce run` leaves out only the manifest
    from jobs.store import DAILY_JOB, DEFAULT_PARTITIONS

    return _python("mapreduce.cli", "run", DAILY_JOB, log_path(data, WEEK_END), "--out", out,
                   "--reducers", str(DEFAULT_PARTITIONS), "--workers", str(workers),
                   "--split-size", str(split_size), "--quiet")


# ---------------------------------------------------------------------------------------------
# correctness

def compare_outputs(ours: dict[str, str], theirs: dict[str, str], what: str) -> None:
    """Raise JobError unless each of our files is byte-identical to DuckDB's."""
    for channel in ("country", "user"):
        a, b = ours[channel], theirs[channel]
        if not filecmp.cmp(a, b, shallow=False):
            raise JobError(f"{what}: {a} differs from DuckDB's {b}: {first_difference(a, b)}")


def first_difference(a: str, b: str) -> str:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        number = 0
        while True:
            number += 1
            la, lb = fa.readline(), fb.readline()
            if la != lb:
                return (f"line {number}: ours {_clip(la)}, DuckDB {_clip(lb)}")
            if not la:
                return "same lines (metadata only)"


def _clip(line: bytes) -> str:
    if not line:
        return "<end of file>"
    return repr(line[:80]) + ("..." if len(line) > 80 else "")


def output_files(out: str, day: dt.date) -> dict[str, str]:
    from jobs.topk import Top50

    names = Top50().output_names(day)
    return {c: os.path.join(out, names[c]) for c in ("country", "user")}


# ---------------------------------------------------------------------------------------------
# the benchmark

def run_bench(data: str, lines_per_day: int, *, runs: int, workers: int, split_size: int,
              duckdb: bool = True) -> dict[str, Any]:
    """Run every case; returns the results (what bench.json holds). Raises JobError when an
    output of ours is not byte-identical to DuckDB's."""
    from jobs.topk import Top50

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

    next_dir = os.path.join(warm_store, f"day-{NEXT_DAY:%Y%m%d}")
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


def results(cases: dict[str, Case], params: dict[str, Any], data: str, *, runs: int,
            workers: int, split_size: int, checked: bool) -> dict[str, Any]:
    duck = cases.get("duckdb")
    rows = []
    for case in cases.values():
        vs = None
        if duck and case.name in ("cold", "warm", "duckdb"):
            vs = duck.median / case.median  # how many times faster than DuckDB
        rows.append({
            "case": case.name, "description": case.description,
            "command": _shown(case.command),
            "runs_wall_s": [round(w, 4) for w in case.walls],
            "runs_peak_rss_bytes": case.peaks,
            "median_wall_s": round(case.median, 4),
            "lines": case.lines,
            "lines_per_s": round(case.lines / case.median),
            "peak_rss_mib": round(case.peak / MIB, 1),
            "vs_duckdb": round(vs, 3) if vs is not None else None,
        })
    by = {r["case"]: r for r in rows}
    scaling = by["daily-2w"]["lines_per_s"] / by["daily-1w"]["lines_per_s"]
    values = {
        "cold_vs_duckdb": by["cold"]["vs_duckdb"],
        "warm_vs_duckdb": by["warm"]["vs_duckdb"],
        "peak_rss_gib": round(max(cases["cold"].peak, cases["warm"].peak) / (1 << 30), 3),
        "daily_scaling": round(scaling, 3),
    }
    targets = []
    for key, text, threshold in TARGETS:
        value = values[key]
        met = None if value is None else (value <= threshold if key == "peak_rss_gib"
                                          else value >= threshold)
        targets.append({"target": key, "text": text, "threshold": threshold, "value": value,
                        "met": met})
    return {
        "format": 1,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "data": os.path.abspath(data),
        "lines_per_day": params["lines_per_day"],
        "full_scale": params["lines_per_day"] >= FULL_SCALE,
        "runs": runs, "workers": workers, "split_size": split_size,
        "logs": {"seed": params["seed"], "corrupt_share": params["corrupt_share"],
                 "sizes": params["sizes"]},
        "machine": machine(),
        "correctness": ("all outputs byte-identical to DuckDB's" if checked
                        else "not checked (--skip-duckdb)"),
        "cases": rows,
        "targets": targets,
    }


def _shown(command: list[str]) -> list[str]:
    """A run's command for the results file: the interpreter by name, the ISO list elided."""
    shown = ["python", *command[1:]]
    if "--codes" in shown:
        shown[shown.index("--codes") + 1] = "<jobs.listens.ISO_CODES>"
    return shown


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(), "platform": platform.platform(),
    }
    try:
        import duckdb

        info["duckdb"] = duckdb.__version__
    except ImportError:
        info["duckdb"] = None
    return info


def render(result: dict[str, Any]) -> str:
    """The table and the targets, as printed."""
    head = ("case", "median wall s", "lines/s", "peak RSS MiB", "vs DuckDB")
    body = [(r["case"], f"{r['median_wall_s']:.3f}", f"{r['lines_per_s']:,}",
             f"{r['peak_rss_mib']:.0f}",
             f"{r['vs_duckdb']:.2f}x" if r["vs_duckdb"] is not None else "-")
            for r in result["cases"]]
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    out = [f"{result['lines_per_day']:,} lines/day, {result['runs']} run(s) per case (medians), "
           f"{result['workers']} worker(s); correctness: {result['correctness']}",
           line(head), line(tuple("-" * w for w in widths)), *map(line, body), "", "targets:"]
    for t in result["targets"]:
        verdict = {True: "MET", False: "NOT MET", None: "n/a"}[t["met"]]
        value = "-" if t["value"] is None else (
            f"{t['value']:.2f} GiB" if t["target"] == "peak_rss_gib" else f"{t['value']:.2f}x")
        out.append(f"  {t['text']:<52} {value:>10}  {verdict}")
    if not result["full_scale"]:
        out.append(f"note: {result['lines_per_day']:,} lines/day is below the targets' "
                   f"{FULL_SCALE:,}: these figures do not judge the targets")
    return "\n".join(out)
