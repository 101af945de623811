"""The benchmark's data and runs: the generated logs, the commands of each case, and measuring
one run in a process of its own (wall time and the peak memory of its whole process tree)."""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import psutil

from mapreduce.errors import JobError
from mapreduce.fsutil import atomic_write_bytes
from mapreduce.report import tree_rss

WEEK_END = dt.date(2024, 1, 7)
NEXT_DAY = dt.date(2024, 1, 8)   # the day that arrives for the warm case
DAYS = 8                          # 2024-01-01 .. 2024-01-08
SEED = 42
CORRUPT_SHARE = 0.001
PARAMS_FORMAT = 2  # 2: the ids' width is a parameter
SAMPLE_SECONDS = 0.1
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


def logs_dir(data: str) -> str:
    return os.path.join(data, "logs")


def log_path(data: str, day: dt.date) -> str:
    from jobs.listens import log_name

    return os.path.join(logs_dir(data), log_name(day))


def ensure_logs(data: str, lines_per_day: int, id_width: str = "realistic") -> dict[str, Any]:
    """The eight logs for ``lines_per_day``: reused when params.json says they were generated
    with the same parameters and every file still has its recorded size, else generated."""
    from jobs.generate import generate

    wanted = {"format": PARAMS_FORMAT, "seed": SEED, "lines_per_day": lines_per_day,
              "corrupt_share": CORRUPT_SHARE, "end": f"{NEXT_DAY:%Y-%m-%d}", "days": DAYS,
              "id_width": id_width}
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
    # the folder is the benchmark's own: its old logs are replaced
    paths = generate(logs_dir(data), days=DAYS, lines_per_day=lines_per_day, end=NEXT_DAY,
                     seed=SEED, corrupt_share=CORRUPT_SHARE, id_width=id_width, force=True)
    params = {**wanted, "sizes": {os.path.basename(p): os.path.getsize(p) for p in paths}}
    atomic_write_bytes(params_path, orjson.dumps(params, option=orjson.OPT_INDENT_2) + b"\n")
    return params


def _size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def _progress(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def _env(root: str = PROJECT_ROOT) -> dict[str, str]:
    # the subprocesses import this very checkout (or the baseline's), installed or not
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def check_baseline(root: str) -> None:
    """A baseline checkout is only measured if its code is what its runs import: an editable
    install of another checkout is found before PYTHONPATH and would be measured instead."""
    probe = subprocess.run([sys.executable, "-c", "import mapreduce; print(mapreduce.__file__)"],
                           env=_env(root), capture_output=True, text=True)
    found = probe.stdout.strip()
    if probe.returncode != 0 or not os.path.realpath(found).startswith(os.path.realpath(root)):
        raise JobError(f"--baseline {root}: its runs would import {found or probe.stderr.strip()}"
                       " instead (an editable install of this project?); run the benchmark from"
                       " an environment where the project is installed with `pip install .`")


def measure(label: str, command: list[str], console: str,
            root: str = PROJECT_ROOT) -> tuple[float, int]:
    """Run ``command``; returns (wall seconds, peak resident bytes of its process tree).

    The tree's memory is summed every 0.1 s: a peak shorter than that can be missed, which at
    full scale (runs of tens of seconds) moves the figure by little."""
    with open(console, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=_env(root))
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
                   threads: int, reader: str = "csv") -> list[str]:
    from jobs.listens import ISO_CODES

    return _python("jobs.bench_duckdb", "--threads", str(threads), "--codes", ",".join(ISO_CODES),
                   "--reader", reader, "--country", os.path.join(out, top_names["country"]),
                   "--user", os.path.join(out, top_names["user"]), *logs)


def duckdb_reader(paths: list[str]) -> tuple[str, str | None]:
    """DuckDB's fast CSV reader where it follows our rule on these logs, else the exact BLOB
    reader; and, then, why (the first line the CSV reader would judge otherwise)."""
    from jobs.bench_duckdb import csv_reader_limits
    from jobs.listens import ISO_CODES

    reason = csv_reader_limits(paths, list(ISO_CODES))
    return ("csv", None) if reason is None else ("blob", reason)


def top50_command(data: str, out: str, store: str, day: dt.date, workers: int,
                  split_size: int) -> list[str]:
    return _python("mapreduce.cli", "top50", "--logs", logs_dir(data), "--out", out,
                   "--store", store, "--date", f"{day:%Y%m%d}", "--workers", str(workers),
                   "--split-size", str(split_size), "--quiet")


def daily_command(data: str, out: str, workers: int, split_size: int) -> list[str]:
    # exactly the reduction the store runs for a day (mapreduce.store.Store.reduce): the top-50
    # job's per-input step, same number of partitions; `mapreduce run` leaves out the manifest
    from mapreduce.store import DEFAULT_PARTITIONS
    from jobs.top50 import Top50

    step = Top50().steps()[0].job.ref
    return _python("mapreduce.cli", "run", step, log_path(data, WEEK_END), "--out", out,
                   "--reducers", str(DEFAULT_PARTITIONS), "--workers", str(workers),
                   "--split-size", str(split_size), "--quiet")


#: the jobs timed side by side by ``bench --jobs``: (case name, job, extra options)
JOBS = (("job:top50", "jobs.top50:TopSongs", ()),
        ("job:distinct_listeners", "jobs.distinct_listeners:DistinctListeners", ()),
        ("job:song_countries", "jobs.song_countries:SongCountries", ()),
        ("job:artist_countries", "jobs.artist_countries:ArtistCountries", ("--artists", "{artists}")))


def job_command(job: str, extra: tuple[str, ...], logs: str, out: str, day: dt.date,
                workers: int, split_size: int, artists: str) -> list[str]:
    """One day of a windowed job from its raw log, fresh store: its per-input step (the cost of
    each new day) and a one-day window."""
    return _python("mapreduce.cli", "run", job, "--logs", logs, "--out", out, "--days", "1",
                   "--date", f"{day:%Y%m%d}", "--workers", str(workers), "--split-size",
                   str(split_size), "--quiet", *(a.format(artists=artists) for a in extra))


def job_lines(job: str) -> int:
    """Lines of the file that declares ``job``, imports and docstring included."""
    import importlib

    module = importlib.import_module(job.partition(":")[0])
    with open(module.__file__, "rb") as f:
        return f.read().count(b"\n")


def write_artists(log: str, path: str) -> None:
    """A song-to-artist side file for every song of ``log`` but one in 20 (those are counted as
    unknown songs): about 20 songs per artist."""
    import numpy as np

    from mapreduce.splits import Split, read_blocks
    from jobs.listens import parse_block

    songs = [np.unique(parse_block(block)["song"])
             for _, block in read_blocks(Split(log, 0, os.path.getsize(log)))]
    ids = np.unique(np.concatenate(songs)) if songs else np.zeros(0, np.uint64)
    ids = ids[ids % 20 != 7]
    with open(path, "w") as f:
        f.writelines(f"{s},{s // 20 + 1}\n" for s in ids.tolist())


def compressed_logs(data: str, day: dt.date) -> dict[str, str]:
    """Folders holding ``day``'s log alone, plain (a hard link), gzip and zstd, made once and reused;
    each compressed copy is written under a temporary name and renamed when whole."""
    import gzip
    import shutil

    import zstandard

    from jobs.listens import log_name

    source = log_path(data, day)
    folders = {}
    for kind, suffix in (("plain", ""), ("gzip", ".gz"), ("zstd", ".zst")):
        folder = os.path.join(data, "compressed", kind)
        os.makedirs(folder, exist_ok=True)
        target = os.path.join(folder, log_name(day) + suffix)
        folders[kind] = folder
        if os.path.exists(target) and os.path.getmtime(target) >= os.path.getmtime(source):
            continue
        _progress(f"writing the {kind} copy of {os.path.basename(source)}")
        tmp = target + ".part"
        if kind == "plain":  # a hard link: a symbolic one would be refused as a leak
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.link(source, tmp)
        else:
            with open(source, "rb") as src, open(tmp, "wb") as raw:
                if kind == "gzip":  # level 6: what gzip(1) and most shippers write
                    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                else:  # level 3: zstd(1)'s default
                    zstandard.ZstdCompressor(level=3).copy_stream(src, raw)
        os.replace(tmp, target)
    return folders
