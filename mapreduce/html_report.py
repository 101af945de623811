"""A run as one self-contained HTML page: task timeline, memory over time, input days, parameters.

Input, a plain-JSON dict (what a command saves beside its outputs; ``scripts/render_report.py``
renders a saved one)::

    title         str
    command       [str]                 the run's argv
    params        {str: any JSON}
    versions      {str: str | null}     python, project, numpy, dask (null: not installed), ...
    executor      str                   "local", "dask", "inline", ...
    workers       int
    started       float                 epoch seconds
    wall_seconds  float
    budget_bytes  int | null            memory budget, drawn as a dashed line (the runs give the
                                        map tasks' in-memory budget before they spill, summed
                                        over the workers)
    tasks         [{stage, task, label, worker, start, end, attempt, outcome}]
                  one per task *attempt*: stage "map" | "reduce" | "window" | "merge" (another
                  name gets a spare colour); task int; label str (file and byte range, or
                  partition); worker "host:pid"; start, end epoch seconds; attempt 1, 2, ...;
                  outcome "ok" | "failed" | "worker died"
    cached_days   [str]                 optional: days served from a cache, so without tasks
    memory        [[epoch seconds, rss bytes]]   the whole process tree
    days          [{day, lines, corrupt_lines, corrupt_by_kind: {kind: n} | null, seconds,
                    cached, samples: [{offset, line}]}]

Output: HTML with inline CSS and SVG and no script at all; a Content-Security-Policy forbids
fetching anything, so the page opens offline, and log bytes in the corrupt samples (hostile by
nature) are escaped text, never markup. Hovering a bar shows its SVG ``<title>``. The figures are
drawn by :mod:`mapreduce.svg_charts`.

Size: about 300 bytes per task attempt; memory is drawn with at most two points (the lowest and
the highest sample) per pixel column, which is exactly the envelope a full polyline would show;
at most ``MAX_SAMPLES_PER_DAY`` samples per day, each cut at ``MAX_SAMPLE_CHARS`` characters.
3000 attempts and 20000 memory samples make about 1 MB.
"""
from __future__ import annotations

import datetime as dt
import json
import shlex
from typing import Any

from mapreduce.fsutil import atomic_writer
from mapreduce.svg_charts import (STAGE_COLOURS, bar_chart, esc, fmt_bytes, fmt_secs,
                                  memory_chart, number, stage_colour, timeline, visible)

KIND_COLOURS = ("#e15759", "#f28e2b", "#edc948", "#b07aa1", "#9c755f", "#76b7b2", "#bab0ac")
TASK_KEYS = ("stage", "task", "label", "worker", "start", "end", "attempt", "outcome")
OUTCOMES = ("ok", "failed", "worker died")
MAX_SAMPLES_PER_DAY = 20
MAX_SAMPLE_CHARS = 400
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 color:#1d2330;background:#f6f7f9;margin:0}
main{max-width:1240px;margin:0 auto;padding:18px 20px 40px}
h1{font-size:22px;margin:4px 0 2px}h2{font-size:17px;margin:26px 0 8px}
.sub{color:#5b6475;margin:0 0 14px}
section>h2:first-child{margin-top:2px}
section{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:12px 16px;margin:14px 0}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0}
.card{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:19px}.card span{color:#5b6475;font-size:12px}
svg{display:block;width:100%;height:auto}svg text{font-size:11px;fill:#3a4252}
.axis line,.grid{stroke:#d5d9e0;stroke-width:1}.band{fill:#f3f5f8}
.bar{stroke:#fff;stroke-width:.3}
.bar[data-outcome="failed"],.bar[data-outcome="worker died"]{stroke:#d62728;stroke-width:2;
 fill-opacity:.45}
.bar[data-outcome="worker died"]{stroke-dasharray:3 2}
.mark{stroke:#d62728;stroke-width:2.4;fill:none}
.retry{stroke:#d62728;stroke-width:1.2;stroke-dasharray:2 3;fill:none}
.cached-day rect{fill:#eef1f5;stroke:#9aa3b2;stroke-dasharray:3 2}
.mem{fill:none;stroke:#4e79a7;stroke-width:1.4}.memfill{fill:#4e79a7;fill-opacity:.12}
.budget{stroke:#d62728;stroke-width:1.4;stroke-dasharray:6 4}
.daybar.cached{fill-opacity:.35}
.legend{display:flex;flex-wrap:wrap;gap:14px;font-size:12px;color:#3a4252;margin:6px 0}
.sw{display:inline-block;width:14px;height:10px;margin-right:5px;vertical-align:-1px;
 border-radius:2px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(340px,1fr));gap:12px}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border-bottom:1px solid #e6e9ee;padding:4px 8px;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tfoot td{font-weight:600}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.sample{white-space:pre-wrap;word-break:break-all;background:#fbf3f2;margin:0}
details{margin:6px 0}summary{cursor:pointer}
.samples td:first-child{width:120px;white-space:nowrap}
.kv th{width:180px;color:#5b6475;font-weight:500}
"""


def render_report(run: dict[str, Any]) -> str:
    """The page for ``run`` (see the module docstring); ValueError names a malformed field."""
    tasks = _tasks(run)
    memory = [(number(t, "memory time"), number(r, "memory rss"))
              for t, r in run.get("memory") or []]
    days = list(run.get("days") or [])
    started = run.get("started")
    wall = run.get("wall_seconds")
    times = [t["start"] for t in tasks] + [t["end"] for t in tasks] + [m[0] for m in memory]
    t0 = min([float(started)] + times) if started is not None else min(times, default=0.0)
    t1 = max([t0 + float(wall or 0)] + times)
    title = str(run.get("title") or "MapReduce run")
    peak = max((r for _, r in memory), default=None)
    budget = run.get("budget_bytes")
    attempts_failed = sum(t["outcome"] != "ok" for t in tasks)
    when = (dt.datetime.fromtimestamp(float(started), dt.timezone.utc)
            .strftime("%Y-%m-%d %H:%M:%S UTC") if started is not None else "unknown start")
    cards = [
        (fmt_secs(float(wall)) if wall is not None else "?", "wall time"),
        (f"{len({(t['stage'], t['task']) for t in tasks}):,}", f"tasks ({len(tasks):,} attempts)"),
        (f"{attempts_failed:,}", "failed attempts"),
        (fmt_bytes(peak) if peak is not None else "?",
         "peak memory" + (f" (budget {fmt_bytes(budget)})" if budget else "")),
        (f"{sum(int(d.get('lines') or 0) for d in days):,}", f"lines in {len(days)} days"),
        (f"{sum(int(d.get('corrupt_lines') or 0) for d in days):,}", "corrupt lines"),
        (f"{run.get('workers', '?')}", f"workers ({run.get('executor', '?')})"),
    ]
    out = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="sub">{esc(when)} · <code>{esc(_command(run.get("command")))}</code></p>',
        '<div class="cards">' + "".join(f"<div class=\"card\"><b>{esc(v)}</b><span>{esc(k)}"
                                        "</span></div>" for v, k in cards) + "</div>",
        '<section id="timeline"><h2>Task timeline</h2>', _legend(tasks),
        timeline(tasks, [str(d) for d in run.get("cached_days") or []], t0, t1), "</section>",
        '<section id="memory"><h2>Memory of the whole process tree</h2>',
        memory_chart(memory, budget, t0, t1), "</section>",
        '<section id="days"><h2>Input days</h2>', _day_charts(days), _day_table(days),
        "</section>",
        '<section id="samples"><h2>Corrupt line samples</h2>', _samples(days), "</section>",
        '<section id="run"><h2>Run</h2>', _run_table(run), "</section>",
        "</main></body></html>\n",
    ]
    return "\n".join(out)


def write_report_html(path: str, run: dict[str, Any]) -> None:
    """Render ``run`` and write it to ``path`` atomically (never a half-written page)."""
    page = render_report(run).encode("utf-8")
    with atomic_writer(path) as f:
        f.write(page)


# -- input ---------------------------------------------------------------------------------

def _tasks(run: dict[str, Any]) -> list[dict[str, Any]]:
    if not isinstance(run, dict):
        raise ValueError("a run must be a JSON object")
    tasks = []
    for i, t in enumerate(run.get("tasks") or []):
        missing = [k for k in TASK_KEYS if not isinstance(t, dict) or k not in t]
        if missing:
            raise ValueError(f"tasks[{i}] lacks {', '.join(missing)}")
        start, end = number(t["start"], f"tasks[{i}].start"), number(t["end"], f"tasks[{i}].end")
        if end < start:
            raise ValueError(f"tasks[{i}] ends before it starts")
        tasks.append({**t, "start": start, "end": end, "stage": str(t["stage"]),
                      "worker": str(t["worker"]), "outcome": str(t["outcome"])})
    return tasks


def _command(argv: Any) -> str:
    if isinstance(argv, (list, tuple)):
        return shlex.join(str(a) for a in argv)
    return str(argv or "")


def _legend(tasks: list[dict[str, Any]]) -> str:
    stages = list(STAGE_COLOURS)
    stages += sorted({t["stage"] for t in tasks} - set(stages))
    spare: dict[str, str] = {}
    items = [f'<span><i class="sw" style="background:{stage_colour(s, spare)}"></i>{esc(s)}</span>'
             for s in stages]
    items += ['<span><i class="sw" style="border:2px solid #d62728"></i>failed attempt</span>',
              '<span><i class="sw" style="border:2px dashed #d62728"></i>✕ worker died</span>',
              '<span><i class="sw" style="border-top:2px dotted #d62728"></i>retry</span>',
              '<span><i class="sw" style="border:1px dashed #9aa3b2;background:#eef1f5"></i>'
              "cached day (no tasks)</span>"]
    return '<div class="legend">' + "".join(items) + "</div>"


def _kinds(days: list[dict[str, Any]]) -> list[str]:
    totals: dict[str, int] = {}
    for d in days:
        for k, v in (d.get("corrupt_by_kind") or {}).items():
            totals[str(k)] = totals.get(str(k), 0) + int(v)
    return sorted(totals, key=lambda k: (-totals[k], k))


def _day_charts(days: list[dict[str, Any]]) -> str:
    if not days:
        return "<p>No input days in this run.</p>"
    kinds = _kinds(days)
    if kinds:
        corrupt = [(k, KIND_COLOURS[i % len(KIND_COLOURS)],
                    [float((d.get("corrupt_by_kind") or {}).get(k, 0)) for d in days])
                   for i, k in enumerate(kinds)]
        unkinded = [float(d.get("corrupt_lines") or 0) - sum(s[2][i] for s in corrupt)
                    for i, d in enumerate(days)]
        if any(v > 0 for v in unkinded):
            corrupt.append(("no kind given", "#bab0ac", unkinded))
    else:
        corrupt = [("corrupt", KIND_COLOURS[0], [float(d.get("corrupt_lines") or 0) for d in days])]
    charts = [
        bar_chart("Lines", days, [("lines", "#4e79a7", [float(d.get("lines") or 0)
                                                          for d in days])], lambda v: f"{v:,.0f}"),
        bar_chart("Corrupt lines" + (" by kind" if kinds else ""), days, corrupt,
                   lambda v: f"{v:,.0f}"),
        bar_chart("Seconds", days, [("seconds", "#59a14f", [float(d.get("seconds") or 0)
                                                              for d in days])], fmt_secs),
    ]
    legend = ""
    if kinds:
        legend = '<div class="legend">' + "".join(
            f'<span><i class="sw" style="background:{c}"></i>{esc(k)}</span>' for k, c, _ in corrupt
        ) + "<span>pale bars: cached days</span></div>"
    return legend + '<div class="charts">' + "".join(charts) + "</div>"


def _day_table(days: list[dict[str, Any]]) -> str:
    if not days:
        return ""
    rows = []
    for d in days:
        by_kind = d.get("corrupt_by_kind")
        kinds = ", ".join(f"{k}: {int(v):,}" for k, v in sorted(
            by_kind.items(), key=lambda kv: -int(kv[1])) if int(v)) if by_kind else "–"
        rows.append(f'<tr class="day" data-day="{esc(d.get("day"))}"><td>{esc(d.get("day"))}</td>'
                    f'<td class="n">{int(d.get("lines") or 0):,}</td>'
                    f'<td class="n">{int(d.get("corrupt_lines") or 0):,}</td><td>{esc(kinds)}</td>'
                    f'<td class="n">{float(d.get("seconds") or 0):.2f}</td>'
                    f'<td>{"cached" if d.get("cached") else "computed"}</td></tr>')
    lines = sum(int(d.get("lines") or 0) for d in days)
    corrupt = sum(int(d.get("corrupt_lines") or 0) for d in days)
    seconds = sum(float(d.get("seconds") or 0) for d in days)
    total = (f'<tr><td>total</td><td class="n">{lines:,}</td><td class="n">{corrupt:,}</td>'
             f'<td></td><td class="n">{seconds:.2f}</td><td></td></tr>')
    return ('<table class="days"><thead><tr><th>day</th><th class="n">lines</th>'
            '<th class="n">corrupt lines</th><th>by kind</th><th class="n">seconds</th>'
            f"<th>cached</th></tr></thead><tbody>{''.join(rows)}</tbody><tfoot>{total}</tfoot>"
            "</table>")


def _samples(days: list[dict[str, Any]]) -> str:
    out = []
    for d in days:
        samples = d.get("samples") or []
        if not samples:
            continue
        rows = []
        for s in samples[:MAX_SAMPLES_PER_DAY]:
            text = visible(str(s.get("line", "")))
            if len(text) > MAX_SAMPLE_CHARS:
                cut = len(text) - MAX_SAMPLE_CHARS
                text = text[:MAX_SAMPLE_CHARS] + f"… (+{cut:,} characters)"
            where = f"{s['file']} " if s.get("file") else ""
            rows.append(f'<tr><td class="n"><code>{esc(where)}{esc(s.get("offset"))}</code></td>'
                        f'<td><pre class="sample">{esc(text)}</pre></td></tr>')
        more = (f" (first {MAX_SAMPLES_PER_DAY} of {len(samples)})"
                if len(samples) > MAX_SAMPLES_PER_DAY else "")
        opened = " open" if not out else ""  # the first day open, the rest one click away
        out.append(f'<details{opened} data-day="{esc(d.get("day"))}"><summary>{esc(d.get("day"))}: '
                   f"{int(d.get('corrupt_lines') or 0):,} corrupt lines{more}</summary>"
                   '<table class="samples"><thead><tr><th class="n">byte offset</th><th>line</th>'
                   f"</tr></thead><tbody>{''.join(rows)}</tbody></table></details>")
    return "".join(out) or "<p>No corrupt lines were sampled.</p>"


def _run_table(run: dict[str, Any]) -> str:
    def table(rows: list[tuple[str, Any]], cls: str) -> str:
        return (f'<table class="kv {cls}">' + "".join(
            f"<tr><th>{esc(k)}</th><td><code>{esc(v)}</code></td></tr>" for k, v in rows)
            + "</table>")

    def js(v: Any) -> str:
        return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True,
                                                       default=str)

    versions = run.get("versions") or {}
    return (table([("executor", run.get("executor")), ("workers", run.get("workers")),
                   ("command", _command(run.get("command"))),
                   ("memory budget", fmt_bytes(run.get("budget_bytes")))], "executor")
            + "<h3>Parameters</h3>"
            + table([(k, js(v)) for k, v in sorted((run.get("params") or {}).items())], "params")
            + "<h3>Versions</h3>"
            + table([(k, "not installed" if v is None else v) for k, v in versions.items()],
                    "versions"))


def run_for_report(*, title: str, params: dict[str, Any], describe: dict[str, Any],
                   started: float, wall: float, trace: list[dict[str, Any]],
                   memory: list[tuple[float, int]], days: list[dict[str, Any]],
                   cached_days: list[str] | None = None,
                   budget: int | None = None) -> dict[str, Any]:
    """The input of :func:`render_report` from what a run measured (its trace, its memory
    sampler's samples, its inputs)."""
    import sys

    from mapreduce.report import versions

    return {"title": title, "command": ["mapreduce", *sys.argv[1:]], "params": params,
            "versions": versions(), "executor": describe.get("executor"),
            "workers": describe.get("workers"), "started": started, "wall_seconds": wall,
            "budget_bytes": budget, "tasks": trace, "cached_days": cached_days or [],
            "memory": [[t, r] for t, r in memory], "days": days}
