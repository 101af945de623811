"""``mapreduce status``: what is on disk for a top-K job, read only.

    LOGS/listen-D.log[.gz|.zst] ─┐
    STORE/STEP/day-D/manifest ───┼─▶ per day: cached / stale (why) / damaged (why) / missing,
                                 │            corrupt-line share, and with --verify the whole
                                 │            log's hash against the one taken when it was reduced
    OUT/*_D.txt, *_D.summary.json┴─▶ per date: present / partial / missing, stale (why), its
                                              report page
    STORE/.lock ─▶ who holds it;  du ─▶ store and output bytes, free space

Each day's state is :meth:`mapreduce.store.Store.day_state` (the rule every run applies) and
each date's staleness is the daemon's planner's (:class:`jobs.watch_plan.Planner`), so status
never disagrees with what a run or the daemon would do. Nothing is written, not even the store's
``store.json``. Exit 0, or 1 when ``--verify`` finds a day whose cache is wrong.
"""
from __future__ import annotations

import argparse
import datetime as dt
import errno
import fcntl
import os
import shutil
from typing import Any

import orjson

from mapreduce.errors import UsageError
from mapreduce.inputs import inside
from mapreduce.metrics import top_level_bytes
from mapreduce.retention import folder_bytes, output_dates
from mapreduce.store import STORE_FORMAT, Store, full_hash, source_identity
from jobs.commands import top_job
from jobs.top50 import TopSongs
from jobs.watch_plan import Planner


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status", help="which days are cached, stale or missing, which outputs exist",
        description="Report, without changing anything, each log day's state in the store "
        "(cached, stale and why, damaged, missing; its corrupt-line share), each date's output "
        "files (present, stale and why, its report page), the store's lock holder and the disk "
        "used. Exit 1 when --verify finds a day whose cache does not match its log.",
        epilog="examples:\n  mapreduce status --logs logs --out out\n"
               "  mapreduce status --logs logs --out out --json --verify",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--logs", required=True, help="folder of dated logs")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--store", default=None, help="per-day results cache (default: OUT/store)")
    p.add_argument("--days", type=int, default=None, help="window length (default: the job's, 7)")
    p.add_argument("--top", type=int, default=None, help="songs kept per group (default 50)")
    p.add_argument("--job", default=None, metavar="MODULE:CLASS",
                   help="a TopSongs class giving the defaults for --days and --top")
    p.add_argument("--json", action="store_true", help="one JSON object instead of tables")
    p.add_argument("--verify", action="store_true",
                   help="hash every log in full and report the days whose cache would be wrong")
    p.add_argument("--allow-links", action="store_true",
                   help="look at logs that resolve outside the logs folder")
    p.set_defaults(handler=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    job, _ = top_job(args)
    if not os.path.isdir(args.logs):
        raise UsageError(f"logs folder {args.logs} does not exist or is not a folder")
    store = args.store or os.path.join(args.out, "store")
    for option, folder in (("--out", args.out), ("--store", store)):
        if inside(folder, args.logs):
            raise UsageError(f"{option} must not be the logs folder or inside it")
    report = status(job, args.logs, args.out, store, verify=args.verify,
                    allow_links=args.allow_links)
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print(render(report))
    return 1 if any(d.get("verify") == "wrong" for d in report["days"]) else 0


def open_store(root: str, step: str) -> Store | None:
    """The store, only if it is one already (status writes nothing, not even store.json)."""
    try:
        with open(os.path.join(root, "store.json"), "rb") as f:
            config = orjson.loads(f.read())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(config, dict) or config.get("format") != STORE_FORMAT:
        return None
    partitions = config.get("partitions")
    if not isinstance(partitions, int) or partitions < 1:
        return None
    return Store(root, partitions, step=step)


def lock_holder(root: str) -> dict[str, Any]:
    """Whether a job holds the store's lock now, and its pid (never through a symlink)."""
    path = os.path.join(root, ".lock")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return {"held": False, "pid": None}
    except OSError as exc:
        return {"held": None, "pid": None, "problem": exc.strerror or str(exc)}
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return {"held": False, "pid": None}
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return {"held": True, "pid": int(text) if text.isdigit() else None}
    finally:
        os.close(fd)


def status(job: TopSongs, logs: str, out: str, store_root: str, *, verify: bool = False,
           allow_links: bool = False) -> dict[str, Any]:
    scan = job.inputs.survey(logs, allow_links=allow_links)
    step = job.steps()[0].name
    store = open_store(store_root, step) if os.path.isdir(store_root) else None
    stored = set(store.stored_days()) if store else set()
    days = []
    for day in sorted({*scan.found, *scan.refused, *stored}):
        path = scan.found.get(day)
        row: dict[str, Any] = {"day": f"{day:%Y-%m-%d}",
                               "log": os.path.basename(path) if path else None}
        if day in scan.refused:
            row.update(state="refused", reason=scan.refused[day])
            days.append(row)
            continue
        if store is None:
            row.update(state="missing", reason=None)
        else:
            try:
                state = store.day_state(day, path)
            except OSError as exc:
                row.update(state="unreadable", reason=exc.strerror or str(exc))
                days.append(row)
                continue
            row.update(state=state.state, reason=state.reason)
            if state.manifest is not None:
                lines = state.manifest.get("lines") or 0
                row["lines"] = lines
                row["corrupt_lines"] = state.manifest.get("corrupt_lines", 0)
                row["corrupt_share"] = round(row["corrupt_lines"] / lines, 6) if lines else 0.0
            if verify and path and state.state == "cached":
                recorded = state.manifest.get("source", {}).get("blake2b")  # type: ignore[union-attr]
                row["verify"] = ("unknown" if not recorded
                                 else "ok" if full_hash(path) == recorded else "wrong")
                if row["verify"] == "wrong":
                    row["reason"] = ("the log's content differs from what was reduced (same "
                                     "size and time); recompute with top50 --recompute "
                                     f"{day:%Y%m%d}")
        days.append(row)
    return {"logs": os.path.abspath(logs), "out": os.path.abspath(out),
            "store": os.path.abspath(store_root), "step": step, "window_days": job.days,
            "days": days, "outputs": _outputs(job, out, store, scan.found),
            "lock": lock_holder(store_root) if os.path.isdir(store_root) else
            {"held": False, "pid": None},
            "disk": _disk(out, store_root)}


def _outputs(job: TopSongs, out: str, store: Store | None,
             found: dict[dt.date, str]) -> list[dict[str, Any]]:
    present = output_dates(job, out) if os.path.isdir(out) else {}
    planner = Planner(job, out, store, None) if store else None
    rows = []
    for day in sorted({*found, *present}):
        names = job.output_names(day)
        have = [k for k, n in names.items() if os.path.isfile(os.path.join(out, n))]
        state = ("present" if len(have) == len(names) else "partial" if have else "missing")
        row: dict[str, Any] = {"date": f"{day:%Y-%m-%d}", "files": state, "stale": None}
        page = os.path.join(out, job.report_name(day))
        row["report"] = os.path.abspath(page) if os.path.isfile(page) else None
        if state == "present":
            window = [w for w in job.window(day) if w in found]
            try:
                idents = {w: source_identity(found[w]) for w in window}
            except OSError as exc:
                row["stale"] = f"a log of its window cannot be read: {exc.strerror or exc}"
            else:
                row["stale"] = (planner.staleness(day, idents) if planner
                                else "no store to check it against")
        rows.append(row)
    return rows


def _disk(out: str, store: str) -> dict[str, Any]:
    store_bytes = folder_bytes(store) if os.path.isdir(store) else 0
    out_bytes = top_level_bytes(out) if os.path.isdir(out) else 0
    where = out if os.path.isdir(out) else os.path.dirname(os.path.abspath(out))
    return {"store_bytes": store_bytes, "output_bytes": out_bytes,
            "free_bytes": shutil.disk_usage(where).free if os.path.isdir(where) else None}


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def render(r: dict[str, Any]) -> str:
    lock = r["lock"]
    held = (f"held by pid {lock['pid']}" if lock.get("held") else
            f"unknown ({lock['problem']})" if lock.get("held") is None else "free")
    disk = r["disk"]
    lines = [f"store {r['store']} ({_size(disk['store_bytes'])}, lock {held}); outputs "
             f"{r['out']} ({_size(disk['output_bytes'])}); {_size(disk['free_bytes'])} free",
             "", f"{'day':<11} {'log':<26} {'store':<9} {'corrupt':>8}  note"]
    for d in r["days"]:
        share = f"{100 * d['corrupt_share']:.2f}%" if "corrupt_share" in d else "-"
        note = d.get("reason") or ""
        if d.get("verify"):
            note = f"verify {d['verify']}" + (f": {note}" if note else "")
        lines.append(f"{d['day']:<11} {d['log'] or '(no log)':<26} {d['state']:<9} {share:>8}"
                     f"  {note}".rstrip())
    lines += ["", f"{'date':<11} {'files':<8} note"]
    for o in r["outputs"]:
        note = f"stale: {o['stale']}" if o["stale"] else ""
        if o["report"]:
            note = (note + "  " if note else "") + f"report file://{o['report']}"
        lines.append(f"{o['date']:<11} {o['files']:<8} {note}".rstrip())
    return "\n".join(_collapse(lines))


def _collapse(lines: list[str]) -> list[str]:
    """Runs of rows that say the same thing with no note (a year of dates whose outputs
    retention removed) as one row: ``FIRST .. LAST  state (N)``."""
    out: list[str] = []
    run: list[tuple[str, str]] = []

    def flush() -> None:
        if len(run) > 2:
            out.append(f"{run[0][0]} .. {run[-1][0]}  {run[0][1].strip()} ({len(run)})")
        else:
            out.extend(f"{day} {rest}" for day, rest in run)
        run.clear()

    for line in lines:
        day, _, rest = line.partition(" ")
        plain = len(day) == 10 and day[4] == "-" and len(rest.split()) <= 3 and "  " not in rest.strip()
        if plain and run and " ".join(rest.split()) == " ".join(run[0][1].split()):
            run.append((day, rest))
            continue
        flush()
        if plain:
            run.append((day, rest))
        else:
            out.append(line)
    flush()
    return out
