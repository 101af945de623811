"""Hand-written SVG for the run report: the task timeline, the memory line, bars per day.

Plain strings, no dependency: every figure is a few kinds of element (rect, path, polyline, text)
with an SVG ``<title>`` for hover, which a plotting library would only wrap in script and bulk.
Every text that came from the run goes through :func:`esc`.
"""
from __future__ import annotations

import html
import math
import re
from typing import Any, Callable, Sequence

STAGE_COLOURS = {"map": "#4e79a7", "reduce": "#f28e2b", "window": "#59a14f", "merge": "#b07aa1"}
SPARE_COLOURS = ("#9c755f", "#76b7b2", "#edc948", "#ff9da7", "#bab0ac")
WIDTH, LEFT, RIGHT = 1200, 200, 24   # SVG units; LEFT holds a lane's "host:pid"
LANE_H = 18


def number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, not {value!r}"[:200])
    return float(value)



def esc(value: Any) -> str:
    """Text or attribute value: markup characters escaped, control characters made visible."""
    return html.escape(visible(str(value), _CONTROL), quote=True)


# Control characters and lone surrogates (from undecodable bytes) would be invisible, upset the
# layout, or not encode as UTF-8 at all; a sample shows even its line breaks as escapes.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_INVISIBLE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")


def visible(text: str, chars: re.Pattern[str] = _INVISIBLE) -> str:
    return chars.sub(lambda m: (f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                else f"\\u{ord(m.group()):04x}"), text)


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "none"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.{0 if n >= 100 else 1}f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def fmt_secs(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    m, sec = divmod(int(round(s)), 60)
    return f"{m}:{sec:02d} min" if m < 60 else f"{m // 60}:{m % 60:02d}:{sec:02d} h"


def _fmt_axis_secs(s: float, step: float) -> str:
    if step < 1:
        return f"{s:.1f}s"
    if step < 60 and s < 60:
        return f"{s:.0f}s"
    m, sec = divmod(int(round(s)), 60)
    return f"{m}:{sec:02d}" if m < 60 else f"{m // 60}h{m % 60:02d}"


_TIME_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
               10800, 21600, 43200, 86400)


def _time_ticks(span: float, target: int = 10) -> tuple[float, list[float]]:
    step = next((s for s in _TIME_STEPS if s >= span / target), _TIME_STEPS[-1])
    return step, [i * step for i in range(int(span / step) + 1)]


def _value_ticks(top: float, target: int = 4) -> list[float]:
    """0 and round steps (1, 2, 5 × 10^k) up to at least ``top``."""
    raw = max(top, 1e-9) / target
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if raw <= m * mag)
    return [i * step for i in range(int(math.ceil(top / step - 1e-9)) + 1)]


def _short(n: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:g}{suffix}"
    return f"{n:g}"


def stage_colour(stage: str, spare: dict[str, str]) -> str:
    if stage in STAGE_COLOURS:
        return STAGE_COLOURS[stage]
    return spare.setdefault(stage, SPARE_COLOURS[len(spare) % len(SPARE_COLOURS)])


def _x_axis(t0: float, t1: float, top: float, bottom: float) -> tuple[Callable[[float], float],
                                                                       list[str]]:
    span = max(t1 - t0, 1e-3)
    scale = (WIDTH - LEFT - RIGHT) / span

    def x(t: float) -> float:
        return LEFT + (t - t0) * scale

    step, ticks = _time_ticks(span)
    parts = ['<g class="axis">']
    for v in ticks:
        px = x(t0 + v)
        parts.append(f'<line class="grid" x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{bottom}"/>'
                     f'<text x="{px:.1f}" y="{bottom + 13}" text-anchor="middle">'
                     f"{_fmt_axis_secs(v, step)}</text>")
    parts.append("</g>")
    return x, parts


def timeline(tasks: list[dict[str, Any]], cached_days: list[str], t0: float, t1: float) -> str:
    first: dict[str, float] = {}
    for t in tasks:
        first[t["worker"]] = min(first.get(t["worker"], t["start"]), t["start"])
    workers = sorted(first, key=lambda w: (first[w], w))
    lane_h = LANE_H if len(workers) > 12 else LANE_H + 6
    lane_y = {w: 6 + i * lane_h for i, w in enumerate(workers)}
    bottom = 6 + len(workers) * lane_h
    x, parts = _x_axis(t0, t1, 2, bottom + 2)
    spare: dict[str, str] = {}
    by_worker: dict[str, list[dict[str, Any]]] = {w: [] for w in workers}
    for t in tasks:
        by_worker[t["worker"]].append(t)
    for w in workers:
        y = lane_y[w]
        label = w if len(w) <= 30 else "…" + w[-29:]
        parts.append(f'<g class="lane" data-worker="{esc(w)}">'
                     f'<rect class="band" x="{LEFT}" y="{y}" width="{WIDTH - LEFT - RIGHT}" '
                     f'height="{lane_h - 1}"/><text x="{LEFT - 6}" y="{y + lane_h / 2 + 3.5:.1f}" '
                     f'text-anchor="end"><title>{esc(w)}</title>{esc(label)}</text>')
        for t in by_worker[w]:
            x0, x1 = x(t["start"]), x(t["end"])
            dur = t["end"] - t["start"]
            tip = (f"{t['stage']} task {t['task']}, attempt {t['attempt']}: {t['outcome']}\n"
                   f"{dur:.2f} s, from {t['start'] - t0:.2f} s to {t['end'] - t0:.2f} s\n"
                   f"{t['label']}\n{w}")
            parts.append(
                f'<rect class="bar" x="{x0:.1f}" y="{y + 2}" width="{max(x1 - x0, 0.8):.1f}" '
                f'height="{lane_h - 5}" fill="{stage_colour(t["stage"], spare)}" '
                f'data-stage="{esc(t["stage"])}" data-task="{esc(t["task"])}" '
                f'data-attempt="{esc(t["attempt"])}" data-outcome="{esc(t["outcome"])}">'
                f"<title>{esc(tip)}</title></rect>")
            if t["outcome"] == "worker died":
                cy = y + lane_h / 2 - 1
                parts.append(f'<path class="mark" d="M{x1 - 4:.1f} {cy - 4:.1f}l8 8m0 -8l-8 8">'
                             f"<title>{esc('worker died during ' + tip)}</title></path>")
        parts.append("</g>")
    parts += _retry_links(tasks, x, lane_y, lane_h)
    if not tasks:
        parts.append(f'<text x="{LEFT}" y="{bottom + 4}">no task ran</text>')
    height = bottom + 22
    if cached_days:
        per_row = max(1, (WIDTH - LEFT - RIGHT) // 96)
        parts.append(f'<text x="{LEFT - 6}" y="{height + 13}" text-anchor="end">cached days</text>')
        for i, day in enumerate(cached_days):
            cx, cy = LEFT + (i % per_row) * 96, height + (i // per_row) * 22
            parts.append(f'<g class="cached-day" data-day="{esc(day)}"><rect x="{cx}" y="{cy}" '
                         f'width="90" height="18" rx="3"/><text x="{cx + 45}" y="{cy + 13}" '
                         f'text-anchor="middle">{esc(day)}</text>'
                         f"<title>{esc(day)}: cached, no task ran</title></g>")
        height += 22 * ((len(cached_days) - 1) // per_row + 1) + 4
    return (f'<svg class="timeline" viewBox="0 0 {WIDTH} {height}" role="img" '
            f'aria-label="task timeline">' + "".join(parts) + "</svg>")


def _retry_links(tasks: list[dict[str, Any]], x: Callable[[float], float],
                 lane_y: dict[str, float], lane_h: float) -> list[str]:
    """A dotted line from each attempt that did not succeed to the next attempt of its task."""
    attempts: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for t in tasks:
        attempts.setdefault((t["stage"], str(t["task"])), []).append(t)
    links = []
    for (stage, task), runs in attempts.items():
        runs.sort(key=lambda t: (_attempt_number(t), t["start"]))
        for a, b in zip(runs, runs[1:]):
            if a["outcome"] == "ok":
                continue
            ya, yb = lane_y[a["worker"]] + lane_h / 2, lane_y[b["worker"]] + lane_h / 2
            links.append(f'<path class="retry" d="M{x(a["end"]):.1f} {ya:.1f}L{x(b["start"]):.1f} '
                         f'{yb:.1f}"><title>{esc(stage)} task {esc(task)}: attempt '
                         f'{esc(a["attempt"])} {esc(a["outcome"])}, retried as attempt '
                         f'{esc(b["attempt"])}</title></path>')
    return links


def _attempt_number(task: dict[str, Any]) -> float:
    try:
        return float(task["attempt"])
    except (TypeError, ValueError):
        return math.inf


def downsample_memory(samples: Sequence[tuple[float, float]], t0: float, t1: float,
                      columns: int) -> list[tuple[float, float]]:
    """At most two samples per pixel column, its lowest and highest, in time order: the same
    envelope the full line would draw, with the peak kept exactly."""
    span = max(t1 - t0, 1e-9)
    buckets: dict[int, list[tuple[float, float]]] = {}
    for s in samples:
        col = min(columns - 1, max(0, int((s[0] - t0) / span * columns)))
        b = buckets.get(col)
        if b is None:
            buckets[col] = [s, s]
        else:
            if s[1] < b[0][1]:
                b[0] = s
            if s[1] > b[1][1]:
                b[1] = s
    kept = []
    for col in sorted(buckets):
        lo, hi = buckets[col]
        kept.extend([lo] if lo is hi else sorted((lo, hi)))
    return kept


def memory_chart(samples: list[tuple[float, float]], budget: Any, t0: float, t1: float) -> str:
    height, top, bottom = 230, 10, 200
    if not samples:
        return "<p>No memory samples were recorded.</p>"
    budget = number(budget, "budget_bytes") if budget is not None else None
    peak_t, peak = max(samples, key=lambda s: s[1])
    mib = 1024 * 1024
    ticks = _value_ticks(max(peak, budget or 0) / mib * 1.05)
    ymax = ticks[-1] * mib

    def y(v: float) -> float:
        return bottom - v / ymax * (bottom - top)

    x, parts = _x_axis(t0, t1, top, bottom)
    for v in ticks:
        label = f"{v / 1024:g} GiB" if ticks[-1] >= 2048 else f"{v:g} MiB"
        parts.append(f'<line class="grid" x1="{LEFT}" y1="{y(v * mib):.1f}" x2="{WIDTH - RIGHT}" '
                     f'y2="{y(v * mib):.1f}"/><text x="{LEFT - 6}" y="{y(v * mib) + 4:.1f}" '
                     f'text-anchor="end">{label}</text>')
    right = x(peak_t) > WIDTH - RIGHT - 120  # the peak's label goes left of a late peak
    anchor = ' text-anchor="end"' if right else ""
    pts = downsample_memory(samples, t0, t1, WIDTH - LEFT - RIGHT)
    line = " ".join(f"{x(t):.1f},{y(r):.1f}" for t, r in pts)
    parts.append(f'<polygon class="memfill" points="{x(pts[0][0]):.1f},{bottom} {line} '
                 f'{x(pts[-1][0]):.1f},{bottom}"/>')
    parts.append(f'<polyline class="mem" points="{line}"><title>resident memory of the run\'s '
                 f"processes, {len(samples):,} samples</title></polyline>")
    parts.append(f'<circle cx="{x(peak_t):.1f}" cy="{y(peak):.1f}" r="3.5" fill="#4e79a7">'
                 f"<title>peak {fmt_bytes(peak)} at {peak_t - t0:.1f} s</title></circle>"
                 f'<text x="{x(peak_t) + (-6 if right else 6):.1f}" '
                 f'y="{max(y(peak) - 6, top + 10):.1f}"{anchor}>'
                 f"peak {fmt_bytes(peak)}</text>")
    if budget:
        parts.append(f'<line class="budget" x1="{LEFT}" y1="{y(budget):.1f}" x2="{WIDTH - RIGHT}" '
                     f'y2="{y(budget):.1f}"><title>memory budget {fmt_bytes(budget)}</title>'
                     f'</line><text x="{LEFT + 4}" y="{y(budget) - 4:.1f}" '
                     f'style="fill:#d62728">budget {fmt_bytes(budget)}</text>')
    return (f'<svg class="memory" viewBox="0 0 {WIDTH} {height}" role="img" '
            f'aria-label="memory over time">' + "".join(parts) + "</svg>")


def bar_chart(title: str, days: list[dict[str, Any]],
               series: list[tuple[str, str, list[float]]], fmt: Callable[[float], str]) -> str:
    """Bars per day, the series stacked; cached days pale."""
    w, h, left, top, bottom = 400, 230, 52, 24, 178
    n = max(len(days), 1)
    totals = [sum(s[2][i] for s in series) for i in range(len(days))]
    ticks = _value_ticks(max(totals, default=0) or 1)
    ymax = ticks[-1]
    slot = (w - left - 10) / n
    parts = [f'<text x="{left}" y="14" style="font-weight:600">{esc(title)}</text>']
    for v in ticks:
        py = bottom - v / ymax * (bottom - top)
        parts.append(f'<line class="grid" x1="{left}" y1="{py:.1f}" x2="{w - 10}" y2="{py:.1f}"/>'
                     f'<text x="{left - 5}" y="{py + 4:.1f}" text-anchor="end">{_short(v)}</text>')
    labels = day_labels([str(d.get("day")) for d in days])
    rotate = n > 10
    for i, d in enumerate(days):
        cx = left + slot * i + slot * 0.15
        base = bottom
        cached = " cached" if d.get("cached") else ""
        for name, colour, values in series:
            v = values[i]
            if v <= 0:
                continue
            bh = v / ymax * (bottom - top)
            parts.append(f'<rect class="daybar{cached}" x="{cx:.1f}" y="{base - bh:.1f}" '
                         f'width="{slot * 0.7:.1f}" height="{bh:.1f}" fill="{colour}" '
                         f'data-day="{esc(d.get("day"))}"><title>{esc(d.get("day"))}: {esc(name)} '
                         f"{esc(fmt(v))}{' (cached)' if cached else ''}</title></rect>")
            base -= bh
        lx = left + slot * (i + 0.5)
        anchor = f'text-anchor="end" transform="rotate(-40 {lx:.1f} {bottom + 14})"' if rotate \
            else 'text-anchor="middle"'
        parts.append(f'<text x="{lx:.1f}" y="{bottom + 14}" {anchor}>{esc(labels[i])}</text>')
    return f'<svg viewBox="0 0 {w} {h}" role="img">' + "".join(parts) + "</svg>"


def day_labels(days: list[str]) -> list[str]:
    """ISO dates of one year without the year, so that a week of labels fits under the bars."""
    if days and all(re.fullmatch(r"\d{4}-\d\d-\d\d", d) for d in days) \
            and len({d[:4] for d in days}) == 1:
        return [d[5:] for d in days]
    return days
