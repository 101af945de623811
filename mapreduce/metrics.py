"""A Prometheus text-format file of the last run, for node_exporter's textfile collector.

    mapreduce top50 ... --metrics-file /var/lib/node_exporter/textfile/mapreduce.prom
    node_exporter --collector.textfile.directory=/var/lib/node_exporter/textfile

The collector reads every ``*.prom`` file of its folder at each scrape, so the file is written
atomically (a temporary ``.NAME.prom.tmp-PID-...`` beside it, which the collector ignores, then
renamed): a scrape never sees half a file. Written by hand rather than with prometheus_client:
a dozen gauges in the exposition format need no dependency (the tests parse the file with
prometheus_client's own parser).

Every gauge carries a ``job`` label (the command's job name, e.g. ``top50``). A failed run keeps
the last success time of the file it replaces, so an alert on ``time() - last_success`` fires
however many runs fail in a row.
"""
from __future__ import annotations

import os
import re
import time
from typing import Any

from mapreduce.errors import UsageError
from mapreduce.fsutil import atomic_write_bytes

PREFIX = "mapreduce_"
_HELP = {
    "last_run_success": "1 if the last run succeeded, else 0",
    "last_run_timestamp_seconds": "Unix time the last run ended",
    "last_success_timestamp_seconds": "Unix time the last successful run ended (0: never)",
    "last_run_duration_seconds": "Seconds the last successful run spent, per stage and in total",
    "last_run_lines_read": "Log lines the last successful run read (days reduced, not cached)",
    "last_run_corrupt_lines": "Corrupt lines in the window of the last successful run",
    "last_run_days_missing": "Days of the last successful run's window that had no log",
    "last_run_days_reduced": "Days the last successful run reduced (not taken from the store)",
    "store_bytes": "Bytes in the store folder",
    "output_bytes": "Bytes of the output files (the store folder not counted)",
}


def check_path(path: str | None) -> str | None:
    """``--metrics-file``, checked before any work (exit 2 when it cannot be written)."""
    if path is None:
        return None
    if not path.endswith(".prom"):
        raise UsageError(f"--metrics-file {path}: the name must end in .prom (node_exporter's "
                         "textfile collector reads only those)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--metrics-file: folder {folder} does not exist or is not writable")
    return path


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _previous_success(path: str, job: str) -> float:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return 0.0
    m = re.search(rf'^{PREFIX}last_success_timestamp_seconds{{job="{re.escape(_escape(job))}"}} '
                  r"(\S+)$", text, re.M)
    try:
        return float(m.group(1)) if m else 0.0
    except ValueError:
        return 0.0


def top_level_bytes(folder: str) -> int:
    """Bytes of the regular files directly in ``folder`` (outputs; the store is a subfolder)."""
    total = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            pass
    return total


def write_metrics(path: str, job: str, *, summary: dict[str, Any] | None, store: str, out: str,
                  extra: dict[str, tuple[str, float]] | None = None) -> None:
    """Write the file for a run that ended: ``summary`` is the run's (None: it failed).
    ``extra``: more gauges, name -> (help, value) (the daemon's)."""
    from mapreduce.retention import folder_bytes

    now = time.time()
    label = f'job="{_escape(job)}"'
    ok = summary is not None
    values: list[tuple[str, str, float]] = [
        ("last_run_success", label, 1.0 if ok else 0.0),
        ("last_run_timestamp_seconds", label, now),
        ("last_success_timestamp_seconds", label, now if ok else _previous_success(path, job)),
    ]
    if summary is not None:
        stages = dict(summary.get("stage_seconds", {}))
        stages["total"] = summary.get("wall_seconds", 0.0)
        for stage, seconds in stages.items():
            values.append(("last_run_duration_seconds", f'{label},stage="{_escape(stage)}"',
                           float(seconds)))
        values += [
            ("last_run_lines_read", label, float(summary["input_lines_read"])),
            ("last_run_corrupt_lines", label, float(sum(summary["corrupt_lines"].values()))),
            ("last_run_days_missing", label, float(len(summary["days_missing"]))),
            ("last_run_days_reduced", label,
             float(sum(1 for d in summary["days"].values() if not d["cached"]))),
        ]
    values += [("store_bytes", label, float(folder_bytes(store))),
               ("output_bytes", label, float(top_level_bytes(out)))]
    helps = dict(_HELP)
    for name, (text, value) in (extra or {}).items():
        helps[name] = text
        values.append((name, label, float(value)))
    lines, said = [], set()
    for name, labels, value in values:
        if name not in said:
            said.add(name)
            lines += [f"# HELP {PREFIX}{name} {helps[name]}", f"# TYPE {PREFIX}{name} gauge"]
        lines.append(f"{PREFIX}{name}{{{labels}}} {value!r}")
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
