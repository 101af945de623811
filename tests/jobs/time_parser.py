"""Side-by-side timing of ``parse_block`` on days of different id widths (not a test).

    python -m tests.jobs.time_parser [--lines 3000000] [--runs 7] [--profile]

Each case is one day of ``--lines`` valid lines cut into the job's blocks
(``DEFAULT_BLOCK_SIZE``), all built in this process before any timing; every run parses each case's blocks once, cases interleaved, so load
from other processes falls on all cases alike. Reported: the median over runs and its ratio to the
8-digit day (the issue's targets: 10-digit within 1.3x, a third 16-19 digits within 2x).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from jobs.listens import COUNTRY_BYTES, parse_block
from mapreduce.splits import DEFAULT_BLOCK_SIZE
from mapreduce.textcols import Fixed, Int, format_rows


def _ids(rng: np.random.Generator, n: int, digits: np.ndarray) -> np.ndarray:
    """Uniform ids with exactly ``digits[i]`` digits each (1..19), at most 2**63-1."""
    low = (10 ** (digits - 1).astype(object)).astype(np.uint64)
    span = np.minimum((9 * 10 ** (digits - 1).astype(object)), 2**63 - 10**18).astype(np.uint64)
    return low + (rng.random(n) * span.astype(np.float64)).astype(np.uint64) % span


def _widths(rng: np.random.Generator, n: int, case: str) -> np.ndarray:
    if case == "8-digit":
        return np.full(n, 8)
    if case == "10-digit":
        return np.full(n, 10)
    # a third of the ids 16-19 digits, the rest 10
    wide = rng.random(n) < 1 / 3
    return np.where(wide, rng.integers(16, 20, n), 10)


def day_blocks(case: str, lines: int, seed: int = 1) -> list[bytes]:
    rng = np.random.default_rng(seed)
    song = _ids(rng, lines, _widths(rng, lines, case))
    user = _ids(rng, lines, _widths(rng, lines, case))
    country = rng.integers(0, len(COUNTRY_BYTES), lines)
    text = format_rows([Int(song), b"|", Int(user), b"|", Fixed(COUNTRY_BYTES[country]), b"\n"],
                       lines)
    blocks, pos = [], 0
    while pos < len(text):  # cut after a newline, as mapreduce.splits.read_blocks does
        stop = len(text)
        if pos + DEFAULT_BLOCK_SIZE < len(text):
            stop = text.rfind(b"\n", pos, pos + DEFAULT_BLOCK_SIZE) + 1
        blocks.append(text[pos:stop])
        pos = stop
    return blocks


CASES = ("8-digit", "10-digit", "third 16-19")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.jobs.time_parser")
    p.add_argument("--lines", type=int, default=3_000_000)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--profile", action="store_true", help="cProfile one pass of each case instead")
    p.add_argument("--baseline", metavar="FILE",
                   help="another version of jobs/listens.py (say, from git show) to time alongside")
    args = p.parse_args(argv)
    parsers = {"": parse_block}
    if args.baseline:
        import importlib.util

        spec = importlib.util.spec_from_file_location("baseline_listens", args.baseline)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        parsers["baseline "] = module.parse_block
    days = {case: day_blocks(case, args.lines, seed=i + 1) for i, case in enumerate(CASES)}
    for case, blocks in days.items():  # warm-up, and a check that nothing was rejected
        valid = sum(len(parse_block(b)["song"]) for b in blocks)
        assert valid == args.lines, (case, valid)
    if args.profile:
        import cProfile
        import pstats

        for case, blocks in days.items():
            prof = cProfile.Profile()
            prof.enable()
            for b in blocks:
                parse_block(b)
            prof.disable()
            print(f"--- {case}")
            pstats.Stats(prof).sort_stats("tottime").print_stats(12)
        return 0
    # wall time, and this process's CPU time: on a machine shared with other work the CPU time
    # is the steadier of the two
    runs = [(name + case, parse, blocks) for name, parse in parsers.items()
            for case, blocks in days.items()]
    wall: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    cpu: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    for _ in range(args.runs):
        for name, parse, blocks in runs:
            t, c = time.perf_counter(), time.process_time()
            for b in blocks:
                parse(b)
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    print(f"{args.lines} lines a day, median of {args.runs} runs; ratios to the same parser's "
          "8-digit day")
    for prefix in parsers:
        base_wall = statistics.median(wall[prefix + "8-digit"])
        base_cpu = statistics.median(cpu[prefix + "8-digit"])
        for case in CASES:
            name = prefix + case
            w, c = statistics.median(wall[name]), statistics.median(cpu[name])
            mb = sum(map(len, days[case])) / 1e6
            print(f"{name:21s} {len(days[case]):3d} blocks {mb:6.1f} MB  wall {w * 1000:7.1f} ms "
                  f"{w / base_wall:5.2f}x   cpu {c * 1000:7.1f} ms {c / base_cpu:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
