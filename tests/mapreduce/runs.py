"""Synthetic run dicts (the schema of ``mapreduce.html_report``) for the report tests."""
from __future__ import annotations

import datetime as dt
import random
from typing import Any

HOSTILE = [
    "</script><script>document.title='pwned'</script>",
    "<img src=x onerror=\"document.title='pwned'\">",
    "\x00\x01 bad\x1b[31m <b>&amp;</b> \udcff\udcfe tail\u2028end",
    "</pre></td></table><svg onload=alert(1)><style>body{display:none}</style>",
    "x" * 5000,
]
STARTED = 1_704_585_600.0  # 2024-01-07 00:00:00 UTC


def synthetic_run(*, map_tasks: int = 24, reducers: int = 6, workers: int = 3,
                  memory_samples: int = 400, days: int = 5, cached: int = 2,
                  seed: int = 7) -> dict[str, Any]:
    """A week-like run: map tasks over ``days`` day files, reduce, window and merge tasks spread
    over ``workers`` processes; map task 1's first attempt dies with its worker (whose lane then
    ends) and is retried on a new worker, reduce task 0's first attempt fails and is retried;
    ``cached`` earlier days are cached. Every day after the first has hostile corrupt samples."""
    rng = random.Random(seed)
    pool = [f"node-{i % 2}:{4100 + i}" for i in range(workers)]
    free = {w: STARTED + 0.05 * i for i, w in enumerate(pool)}
    tasks: list[dict[str, Any]] = []
    day_names = [str(dt.date(2024, 1, 1) + dt.timedelta(days=cached + i)) for i in range(days)]

    def run_task(stage: str, task: int, label: str, seconds: float, outcome: str = "ok",
                 attempt: int = 1, worker: str | None = None) -> None:
        w = worker or min(free, key=lambda k: free[k])
        start = free[w] + rng.uniform(0.001, 0.01)
        if attempt > 1:  # a retry starts once the attempt before it has ended
            start = max(start, tasks[-1]["end"] + 0.05)
        tasks.append({"stage": stage, "task": task, "label": label, "worker": w, "start": start,
                      "end": start + seconds, "attempt": attempt, "outcome": outcome})
        free[w] = start + seconds

    per_day = max(1, map_tasks // days)
    for i in range(map_tasks):
        day = day_names[min(i // per_day, days - 1)]
        lo = (i % per_day) * 64 << 20
        label = f"/logs/{day}.log bytes {lo}-{lo + (64 << 20)}"
        if i == 1:
            victim = min(free, key=lambda k: free[k])
            run_task("map", i, label, 0.4, "worker died", 1, victim)
            died_at = free.pop(victim)
            replacement = f"node-9:{5100 + i}"
            free[replacement] = died_at + 0.2
            run_task("map", i, label, rng.uniform(0.5, 1.5), "ok", 2, replacement)
        else:
            run_task("map", i, label, rng.uniform(0.5, 1.5))
    barrier = max(free.values())
    free = {w: barrier for w in free}
    for p in range(reducers):
        if p == 0:
            run_task("reduce", p, f"partition {p}", 0.3, "failed", 1)
            run_task("reduce", p, f"partition {p}", rng.uniform(0.2, 0.6), "ok", 2)
        else:
            run_task("reduce", p, f"partition {p}", rng.uniform(0.2, 0.6))
    barrier = max(free.values())
    free = {w: barrier for w in free}
    for p in range(reducers):
        run_task("window", p, f"partition {p}, days {day_names[0]}..{day_names[-1]}",
                 rng.uniform(0.1, 0.4))
    run_task("merge", 0, "top 50 of all partitions", 0.2)
    end = max(t["end"] for t in tasks) + 0.1
    step = (end - STARTED) / max(memory_samples - 1, 1)
    memory = [[STARTED + i * step,
               int((180 + 250 * (i / memory_samples) + rng.uniform(0, 60)) * 2**20)]
              for i in range(memory_samples)]
    day_rows = []
    for i, day in enumerate(day_names):
        kinds = {"not json": rng.randint(1, 9), "missing field": rng.randint(0, 5)} if i else None
        corrupt = sum(kinds.values()) if kinds else 0
        samples = [{"offset": 1000 * (j + 1) + i, "line": HOSTILE[j % len(HOSTILE)]}
                   for j in range(min(corrupt, 25))]
        day_rows.append({"day": day, "lines": 1_000_000 + 1000 * i, "corrupt_lines": corrupt,
                         "corrupt_by_kind": kinds, "seconds": round(rng.uniform(2, 9), 2),
                         "cached": False, "samples": samples})
    cached_days = [str(dt.date(2024, 1, 1) + dt.timedelta(days=i)) for i in range(cached)]
    for day in cached_days:
        day_rows.insert(cached_days.index(day), {
            "day": day, "lines": 990_000, "corrupt_lines": 3,
            "corrupt_by_kind": {"not json": 3}, "seconds": 0.01, "cached": True, "samples": []})
    return {
        "title": "top50 2024-01-07 <window> & friends",
        "command": ["mapreduce", "top50", "--days", str(days + cached), "--store", "/tmp/a b"],
        "params": {"days": days + cached, "reducers": reducers, "split_size": 64 << 20,
                   "note": "<b>not bold</b>"},
        "versions": {"python": "3.11.7", "project": "0.1.0", "numpy": "2.4.6", "dask": None},
        "executor": "local", "workers": workers, "started": STARTED,
        "wall_seconds": round(end - STARTED, 3), "budget_bytes": 512 << 20,
        "tasks": tasks, "cached_days": cached_days, "memory": memory, "days": day_rows,
    }
