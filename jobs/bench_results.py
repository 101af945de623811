"""The benchmark's verdicts: our files against DuckDB's, byte for byte, and the results table
with the targets, as saved (bench.json) and printed."""
from __future__ import annotations

import datetime as dt
import filecmp
import os
import platform
from typing import Any

import psutil

from mapreduce.errors import JobError
from jobs.bench_runs import Case

FULL_SCALE = 30_000_000
MIB = 1 << 20

#: the targets: (key, text, threshold)
TARGETS = (
    ("cold_vs_duckdb", "cold >= 4x faster than DuckDB", 4.0),
    ("warm_vs_duckdb", "warm >= 10x faster than DuckDB recomputing the week", 10.0),
    ("peak_rss_gib", "peak memory <= 1 GiB, cold and warm", 1.0),
    ("daily_scaling", "daily throughput 2 workers >= 1.8x 1 worker", 1.8),
)


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
    from jobs.top50 import Top50

    names = Top50().output_names(day)
    return {c: os.path.join(out, names[c]) for c in ("country", "user")}


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
        if case.name in ("day-gzip", "day-zstd") and "day-plain" in cases:
            rows[-1]["vs_plain"] = round(case.median / cases["day-plain"].median, 3)
        if case.name.startswith("job:") and "job:top50" in cases:
            rows[-1]["vs_top50"] = round(case.median / cases["job:top50"].median, 3)
        base = cases.get(f"{case.name}-baseline")
        if base is not None:  # how many times faster than the baseline, and its peak
            rows[-1]["vs_baseline"] = round(base.median / case.median, 3)
            rows[-1]["baseline_peak_rss_mib"] = round(base.peak / MIB, 1)
    by = {r["case"]: r for r in rows}
    core = "cold" in cases  # not with --only-extra
    values = {
        "cold_vs_duckdb": by["cold"]["vs_duckdb"] if core else None,
        "warm_vs_duckdb": by["warm"]["vs_duckdb"] if core else None,
        "peak_rss_gib": round(max(cases["cold"].peak, cases["warm"].peak) / (1 << 30), 3)
        if core else None,
        "daily_scaling": round(by["daily-2w"]["lines_per_s"] / by["daily-1w"]["lines_per_s"], 3)
        if core else None,
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
                 "id_width": params.get("id_width"), "sizes": params["sizes"]},
        "duckdb_reader": params.get("duckdb_reader"),
        "duckdb_csv_limit": params.get("duckdb_csv_limit"),
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

    out = [f"{result['lines_per_day']:,} lines/day, {result['logs']['id_width']} ids, "
           f"{result['runs']} run(s) per case (medians), {result['workers']} worker(s); "
           f"DuckDB reader: {result['duckdb_reader'] or '-'}; correctness: "
           f"{result['correctness']}",
           line(head), line(tuple("-" * w for w in widths)), *map(line, body), "", "targets:"]
    for t in result["targets"]:
        verdict = {True: "MET", False: "NOT MET", None: "n/a"}[t["met"]]
        value = "-" if t["value"] is None else (
            f"{t['value']:.2f} GiB" if t["target"] == "peak_rss_gib" else f"{t['value']:.2f}x")
        out.append(f"  {t['text']:<52} {value:>10}  {verdict}")
    for r in result["cases"]:
        if "vs_plain" in r:
            out.append(f"  {r['case']}: {r['median_wall_s']:.2f} s, {r['vs_plain']:.2f}x the "
                       "plain log's day")
        if "vs_top50" in r:
            out.append(f"  {r['case']}: {r['median_wall_s']:.2f} s a day, {r['vs_top50']:.2f}x "
                       f"the top-50 job's ({r['description']})")
        if "vs_baseline" in r:
            out.append(f"  {r['case']} against the baseline: {r['vs_baseline']:.3f}x as fast "
                       f"(medians), peak {r['peak_rss_mib']:.0f} MiB against "
                       f"{r['baseline_peak_rss_mib']:.0f} MiB")
    if not result["full_scale"]:
        out.append(f"note: {result['lines_per_day']:,} lines/day is below the targets' "
                   f"{FULL_SCALE:,}: these figures do not judge the targets")
    return "\n".join(out)


#: the long-window targets at full scale (issue 13)
LONG_TARGET_SECONDS = 600
LONG_TARGET_STORE_BYTES = 50e9


def render_long(result: dict[str, Any]) -> str:
    """The long-window table, and its extrapolation to FULL_SCALE lines a day, arithmetic shown."""
    head = ("lines/day", "days", "partitions", "rows read (scratch)", "scratch s", "first s",
            "rows read (next)", "next day s", "peak RSS MiB", "B/row")
    body = []
    for c in result["cases"]:
        body.append((f"{c['lines_per_day']:,}", str(c["days"]),
                     str(c.get("partitions", result.get("partitions", 8))),
                     f"{c['scratch']['rows_read']:,}", f"{c['scratch']['window_stage_s']:.2f}",
                     f"{c['first']['window_stage_s']:.2f}", f"{c['next_day']['rows_read']:,}",
                     f"{c['next_day']['window_stage_s']:.2f}",
                     f"{max(c[k]['peak_rss_bytes'] for k in ('scratch', 'first', 'next_day')) / MIB:.0f}",
                     f"{c['bytes_per_row']:.2f}"))
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths))

    out = [f"long window (window stage only: rollups + window + merge seconds; "
           f"{result['workers']} worker(s))",
           line(head), line(tuple("-" * w for w in widths)), *map(line, body)]
    year = max(result["cases"], key=lambda c: (c["days"], -c["lines_per_day"]))
    big = max(result["cases"], key=lambda c: c["lines_per_day"])
    rows_day = big["stored_rows_per_day"] / big["lines_per_day"] * FULL_SCALE
    days = year["days"]
    per_row = year["next_day"]["window_stage_s"] / max(1, year["next_day"]["rows_read"])
    per_row_big = big["next_day"]["window_stage_s"] / max(1, big["next_day"]["rows_read"])
    share = year["next_day"]["rows_read"] / (days * year["stored_rows_per_day"])
    full_rows = share * days * rows_day
    seconds = full_rows * max(per_row, per_row_big) / 1
    rollup_share = result.get("rollup_bytes_share", 0.0)
    if "store" in year:  # measured: whole and keyed days, blocks, keys, after the year's runs
        parts = year["store"]
        all_in = sum(parts.values()) / max(1, year["stored_days"] * year["stored_rows_per_day"])
        store = all_in * days * rows_day
        sizes = ", ".join(f"{k.replace('_', ' ')} {v / 1e6:.3g} MB" for k, v in parts.items())
        store_text = (f"  store: {all_in:.2f} B a stored row, all of it (measured after the "
                      f"runs: {sizes})"
                      f" x {days} x {rows_day / 1e6:.1f} M = {store / 1e9:.1f} GB")
    else:
        store = year["bytes_per_row"] * days * rows_day * (1 + rollup_share)
        store_text = (f"  store: {year['bytes_per_row']:.2f} B/row x {days} x "
                      f"{rows_day / 1e6:.1f} M x (1 + {rollup_share:.2f} rollups) = "
                      f"{store / 1e9:.1f} GB")
    peak_next = year["next_day"]["peak_rss_bytes"] / MIB
    out += ["", f"extrapolation to {FULL_SCALE:,} lines a day ({days} days):",
            f"  stored rows a day: {big['stored_rows_per_day']:,} per {big['lines_per_day']:,} "
            f"lines -> {rows_day / 1e6:.1f} M",
            f"  next day reads {share:.2f} of the window's stored rows (rollups + edge days) -> "
            f"{share:.2f} x {days} x {rows_day / 1e6:.1f} M = {full_rows / 1e9:.2f} G rows",
            f"  at {max(per_row, per_row_big) * 1e9:.0f} ns a row (the slower of {per_row * 1e9:.0f} "
            f"at {days} days, {per_row_big * 1e9:.0f} at {big['lines_per_day']:,} lines/day) -> "
            f"{seconds:.0f} s (target <= {LONG_TARGET_SECONDS} s: "
            f"{'MET' if seconds <= LONG_TARGET_SECONDS else 'NOT MET'})",
            f"{store_text} (target <= {LONG_TARGET_STORE_BYTES / 1e9:.0f} GB: "
            f"{'MET' if store <= LONG_TARGET_STORE_BYTES else 'NOT MET'})",
            f"  peak RSS of the next day's {days}-day window: {peak_next:.0f} MiB (target <= "
            f"1024 MiB: {'MET' if peak_next <= 1024 else 'NOT MET'}; the column above is the "
            "largest of each row's three runs)"]
    return "\n".join(out)
