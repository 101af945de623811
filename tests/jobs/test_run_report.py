"""The HTML report of real runs: every task attempt of the run on the timeline, in a real
browser, and a worker killed mid-task shown as a died attempt followed by its retry."""
from __future__ import annotations

import json
import re
from collections import Counter

from jobs.generate import generate
from jobs.top50 import Top50
from mapreduce.executors import make_backend
from mapreduce.windowed import run_window_job
from tests.conftest import DAY
from tests.mapreduce.browser import Browser
from tests.mapreduce.test_html_report import chromium  # noqa: F401  (the session fixture)
from tests.reliability.jobs import DailyListensKillsItsWorkerOnce

BAR = re.compile(r'<rect class="bar"[^>]*>')
ATTR = re.compile(r'data-(stage|task|attempt|outcome)="([^"]*)"')


def _bars(html: str) -> list[tuple[str, ...]]:
    """(stage, task, attempt, outcome) of every bar of the timeline, in page order."""
    found = []
    for tag in BAR.findall(html):
        attrs = dict(ATTR.findall(tag))
        found.append(tuple(attrs[k] for k in ("stage", "task", "attempt", "outcome")))
    return found


def test_top50_report_has_a_lane_per_worker_and_a_bar_per_task(chromium, tmp_path,  # noqa: F811
                                                                 local_backend):
    logs, out, page = tmp_path / "logs", tmp_path / "out", tmp_path / "run.html"
    generate(str(logs), days=3, lines_per_day=4000, end=DAY)
    summary = run_window_job(Top50(), str(logs), str(out), local_backend, partitions=3,
                             split_size=20_000, html_report=str(page))
    attempts = summary["task_attempts"]
    expected = Counter({stage: sum(n.values()) for stage, n in attempts["by_stage"].items()})
    assert expected["map"] >= 6 and expected["reduce"] == 18 and expected["merge"] == 2
    with Browser(chromium, str(tmp_path / "profile")) as browser:
        seen = browser.open(page.as_uri())
        lanes = browser.evaluate("JSON.stringify([...document.querySelectorAll('g.lane')]"
                                 ".map(g => g.dataset.worker))", seen["session"])
        bars = browser.evaluate("JSON.stringify([...document.querySelectorAll('rect.bar')]"
                                ".map(r => r.dataset.stage))", seen["session"])
    assert seen["requests"] == [page.as_uri()]
    assert sorted(json.loads(lanes)) == attempts["workers"]
    assert Counter(json.loads(bars)) == expected


def test_report_shows_a_killed_workers_attempt_and_its_retry(tmp_path, monkeypatch):
    logs, out, page = tmp_path / "logs", tmp_path / "out", tmp_path / "run.html"
    generate(str(logs), days=1, lines_per_day=4000, end=DAY)
    monkeypatch.setenv("MR_TEST_KILL_MARKER", str(tmp_path / "killed"))
    monkeypatch.setattr(Top50, "per_input", DailyListensKillsItsWorkerOnce)
    with make_backend("local", 2) as backend:
        summary = run_window_job(Top50(), str(logs), str(out), backend, partitions=2,
                                 split_size=20_000, html_report=str(page))
    assert summary["task_attempts"]["by_stage"]["map"]["worker died"] == 1
    bars = _bars(page.read_text())
    died = [(stage, task) for stage, task, attempt, outcome in bars if outcome == "worker died"]
    assert died and died[0][0] == "map"
    retried = [b for b in bars if (b[0], b[1]) == died[0]]
    assert [(a, o) for _, _, a, o in retried] == [("1", "worker died"), ("2", "ok")]
