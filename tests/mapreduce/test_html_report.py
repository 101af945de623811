"""The HTML run report: its structure from a synthetic run, its size at full scale, the pieces that
record a run (memory samples, versions), the render script, and the page in a real browser."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from html.parser import HTMLParser

import pytest

from mapreduce.html_report import render_report, write_report_html
from mapreduce.report import MemorySampler, versions
from mapreduce.svg_charts import WIDTH, LEFT, RIGHT, downsample_memory
from tests.conftest import temp_names
from tests.mapreduce.browser import Browser, install_chromium
from tests.mapreduce.runs import HOSTILE, synthetic_run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOID = {"meta", "link", "br", "img", "hr", "input", "source", "wbr", "col", "area", "base"}
URL_ATTRS = {"src", "href", "xlink:href", "action", "formaction", "poster", "data", "srcset"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node] = []
        self.text: list[str] = []

    def all(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        found = []
        for child in self.children:
            if (tag is None or child.tag == tag) and (
                    cls is None or cls in (child.attrs.get("class") or "").split()):
                found.append(child)
            found += child.all(tag, cls)
        return found

    def full_text(self) -> str:
        return "".join(self.text) + "".join(c.full_text() for c in self.children)


class TreeBuilder(HTMLParser):
    """The element tree as an HTML parser sees it (SVG's ``<x/>`` counts as empty)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = self.current = Node("#root", {}, None)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Node(tag, dict(attrs), self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        assert node is not None and node.parent is not None, f"stray </{tag}>"
        self.current = node.parent

    def handle_data(self, data):
        self.current.text.append(data)


def parse(page: str) -> Node:
    builder = TreeBuilder()
    builder.feed(page)
    builder.close()
    return builder.root


def attempt_key(t) -> tuple[str, str, str, str]:
    return t["stage"], str(t["task"]), str(t["attempt"]), t["outcome"]


def bar_key(bar: Node) -> tuple[str, str, str, str]:
    a = bar.attrs
    return a["data-stage"], a["data-task"], a["data-attempt"], a["data-outcome"]


def check_timeline(doc: Node, run: dict) -> None:
    """One lane per worker; each lane holds exactly that worker's attempts, one bar each."""
    lanes = doc.all("g", "lane")
    workers = Counter(t["worker"] for t in run["tasks"])
    assert sorted(lane.attrs["data-worker"] for lane in lanes) == sorted(workers)
    for lane in lanes:
        bars = lane.all("rect", "bar")
        expected = [attempt_key(t) for t in run["tasks"] if t["worker"] == lane.attrs["data-worker"]]
        assert sorted(bar_key(b) for b in bars) == sorted(expected)
    assert len(doc.all("rect", "bar")) == len(run["tasks"])


def check_offline(doc: Node) -> None:
    """Nothing that runs or fetches: no script, no external reference in any attribute or style."""
    assert not doc.all("script") and not doc.all("img") and not doc.all("iframe")
    assert not doc.all("link") and not doc.all("object") and not doc.all("embed")
    for node in doc.all():
        for name, value in node.attrs.items():
            assert not name.startswith("on"), f"<{node.tag} {name}>"
            if name in URL_ATTRS:
                assert (value or "").startswith("#"), f"<{node.tag} {name}={value}>"
    for style in doc.all("style"):
        css = style.full_text()
        assert "@import" not in css and "url(" not in css and "@font-face" not in css
    csp = [m for m in doc.all("meta") if m.attrs.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0].attrs["content"]


@pytest.fixture(scope="module")
def run() -> dict:
    return synthetic_run()


@pytest.fixture(scope="module")
def doc(run) -> Node:
    return parse(render_report(run))


def test_timeline_has_one_lane_per_worker_and_one_bar_per_attempt(run, doc):
    assert {t["stage"] for t in run["tasks"]} == {"map", "reduce", "window", "merge"}
    assert len({t["worker"] for t in run["tasks"]}) == 4  # 3 workers + the one replacing the dead
    check_timeline(doc, run)
    for bar in doc.all("rect", "bar"):
        task = next(t for t in run["tasks"] if attempt_key(t) == bar_key(bar))
        tip = bar.all("title")[0].full_text()
        seconds = f"{task['end'] - task['start']:.2f} s"
        for part in (task["stage"], f"task {task['task']}", f"attempt {task['attempt']}",
                     task["outcome"], task["label"], seconds, task["worker"]):
            assert part in tip, (part, tip)


def test_failed_and_died_attempts_are_marked_and_linked_to_their_retry(run, doc):
    bars = {bar_key(b): b for b in doc.all("rect", "bar")}
    assert ("map", "1", "1", "worker died") in bars and ("map", "1", "2", "ok") in bars
    assert ("reduce", "0", "1", "failed") in bars and ("reduce", "0", "2", "ok") in bars
    marks = doc.all("path", "mark")
    assert len(marks) == 1 and "worker died" in marks[0].full_text()
    retries = sorted(p.full_text() for p in doc.all("path", "retry"))
    assert retries == ["map task 1: attempt 1 worker died, retried as attempt 2",
                       "reduce task 0: attempt 1 failed, retried as attempt 2"]
    legend = doc.all("div", "legend")[0].full_text()
    for word in ("map", "reduce", "window", "merge", "failed", "worker died", "cached"):
        assert word in legend


def test_cached_days_are_shown_without_bars(run, doc):
    chips = doc.all("g", "cached-day")
    assert [c.attrs["data-day"] for c in chips] == run["cached_days"] == ["2024-01-01", "2024-01-02"]
    assert all(not c.all("rect", "bar") for c in chips)
    rows = {r.attrs["data-day"]: [td.full_text() for td in r.all("td")]
            for r in doc.all("tr", "day")}
    assert [d["day"] for d in run["days"]] == list(rows)
    assert rows["2024-01-01"][-1] == "cached" and rows["2024-01-04"][-1] == "computed"
    cached_bars = [b for b in doc.all("rect", "daybar") if "cached" in b.attrs["class"].split()]
    assert {b.attrs["data-day"] for b in cached_bars} == set(run["cached_days"])


def test_days_chart_and_table_show_lines_corrupt_kinds_and_seconds(run, doc):
    rows = {r.attrs["data-day"]: [td.full_text() for td in r.all("td")]
            for r in doc.all("tr", "day")}
    for d in run["days"]:
        day, lines, corrupt, kinds, seconds, _ = rows[d["day"]]
        assert lines == f"{d['lines']:,}" and corrupt == f"{d['corrupt_lines']:,}"
        assert seconds == f"{d['seconds']:.2f}"
        for kind, n in (d["corrupt_by_kind"] or {}).items():
            assert (f"{kind}: {n:,}" in kinds) == (n > 0)
    footer = [td.full_text() for td in doc.all("tfoot")[0].all("td")]
    assert footer[1] == f"{sum(d['lines'] for d in run['days']):,}"
    assert footer[2] == f"{sum(d['corrupt_lines'] for d in run['days']):,}"
    # one bar per day and series with a value: lines, seconds, and every kind of corrupt line
    tips = [b.all("title")[0].full_text() for b in doc.all("rect", "daybar")]
    for d in run["days"]:
        assert f"{d['day']}: lines {d['lines']:,}" in " ".join(tips)
        for kind, n in (d["corrupt_by_kind"] or {}).items():
            assert any(t.startswith(f"{d['day']}: {kind} {n:,}") for t in tips) == (n > 0)


def test_hostile_sample_lines_are_text_never_markup(run, doc):
    check_offline(doc)
    shown = [pre.full_text() for pre in doc.all("pre", "sample")]
    assert HOSTILE[0] in shown and HOSTILE[1] in shown and HOSTILE[3] in shown
    # control characters and undecodable bytes become visible escapes, a long line is cut
    assert "\\x00\\x01 bad\\x1b[31m <b>&amp;</b> \\udcff\\udcfe tail\\u2028end" in shown
    assert any(s.startswith("x" * 400 + "… (+4,600 characters)") for s in shown)
    offsets = [td.full_text() for table in doc.all("table", "samples")
               for td in table.all("td", "n")]
    first = next(d for d in run["days"] if d["samples"])  # the one day whose samples are open
    assert offsets[:len(first["samples"])] == [str(x["offset"]) for x in first["samples"]]
    assert ["open" in d.attrs for d in doc.all("details")][:2] == [True, False]
    assert "<window> & friends" in doc.all("title")[0].full_text()


def test_run_parameters_versions_executor_and_workers_are_shown(run, doc):
    def table(cls: str) -> dict[str, str]:
        t = doc.all("table", cls)[0]
        return {tr.all("th")[0].full_text(): tr.all("td")[0].full_text() for tr in t.all("tr")}

    assert table("params") == {"days": "7", "reducers": "6", "split_size": str(64 << 20),
                               "note": "<b>not bold</b>"}
    assert table("versions") == {"python": "3.11.7", "project": "0.1.0", "numpy": "2.4.6",
                                 "dask": "not installed"}
    executor = table("executor")
    assert executor["executor"] == "local" and executor["workers"] == "3"
    assert executor["command"] == "mapreduce top50 --days 7 --store '/tmp/a b'"
    assert executor["memory budget"] == "512 MiB"


def test_memory_line_is_downsampled_and_keeps_the_peak(run, doc):
    line = doc.all("polyline", "mem")[0]
    points = line.attrs["points"].split()
    assert 2 <= len(points) <= 2 * (WIDTH - LEFT - RIGHT)
    budget = doc.all("line", "budget")
    assert len(budget) == 1 and "512 MiB" in budget[0].full_text()
    peak = max(r for _, r in run["memory"])
    assert f"peak {peak / 2**20:.0f} MiB" in doc.all("svg", "memory")[0].full_text()


def test_downsample_keeps_the_envelope_of_every_column():
    rng = random.Random(1)
    samples = [(i * 0.01, rng.randint(0, 10**9)) for i in range(50_000)]
    kept = downsample_memory(samples, 0.0, 500.0, 700)
    assert len(kept) <= 1400
    assert [t for t, _ in kept] == sorted(t for t, _ in kept)
    assert max(r for _, r in kept) == max(r for _, r in samples)
    assert min(r for _, r in kept) == min(r for _, r in samples)
    for col in range(0, 700, 97):  # each column's extremes are kept exactly
        inside = [r for t, r in samples if int(t / 500.0 * 700) == col]
        got = [r for t, r in kept if int(t / 500.0 * 700) == col]
        assert sorted(got) == sorted({min(inside), max(inside)})


def test_a_run_with_every_day_cached_renders():
    run = synthetic_run()
    run.update(tasks=[], memory=[], days=[d for d in run["days"] if d["cached"]])
    doc = parse(render_report(run))
    assert not doc.all("g", "lane") and not doc.all("rect", "bar")
    assert len(doc.all("g", "cached-day")) == 2
    assert "no task ran" in doc.all("svg", "timeline")[0].full_text()
    assert "No memory samples" in doc.all("section")[1].full_text()


def test_full_scale_report_stays_small():
    """A week at full scale: about 3000 task attempts on 8 workers, 20000 memory samples."""
    run = synthetic_run(map_tasks=2901, reducers=48, workers=8, memory_samples=20_000, days=7)
    tasks = len(run["tasks"])
    assert tasks >= 3000
    page = render_report(run)
    size = len(page.encode())
    print(f"\nreport of {tasks} attempts and 20000 memory samples: {size:,} bytes")
    assert size < 1_500_000
    doc = parse(page)
    check_timeline(doc, run)
    check_offline(doc)


@pytest.mark.parametrize("broken, message", [
    ({"tasks": [{"stage": "map"}]}, "tasks[0] lacks task, label, worker, start, end"),
    ({"tasks": [{"stage": "map", "task": 0, "label": "", "worker": "h:1", "start": 5, "end": 4,
                 "attempt": 1, "outcome": "ok"}]}, "tasks[0] ends before it starts"),
    ({"tasks": [{"stage": "map", "task": 0, "label": "", "worker": "h:1", "start": "soon",
                 "end": 4, "attempt": 1, "outcome": "ok"}]}, "tasks[0].start must be a finite"),
    ({"memory": [[1.0, float("nan")]]}, "memory rss must be a finite number"),
    ([], "a run must be a JSON object"),
])
def test_a_malformed_run_is_one_clear_error(broken, message):
    with pytest.raises(ValueError) as err:
        render_report(broken)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_write_report_html_replaces_the_file_only_when_complete(tmp_path, run):
    path = tmp_path / "run.html"
    write_report_html(str(path), run)
    assert path.read_text(encoding="utf-8") == render_report(run)
    before = path.read_bytes()
    with pytest.raises(ValueError):
        write_report_html(str(path), {"tasks": [{"stage": "map"}]})
    assert path.read_bytes() == before and not temp_names(str(tmp_path))


def test_render_report_script(tmp_path, run):
    script = os.path.join(ROOT, "scripts", "render_report.py")
    saved, out = tmp_path / "run.json", tmp_path / "out.html"
    saved.write_text(json.dumps(run, ensure_ascii=True), encoding="utf-8")

    def call(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                              timeout=120)

    done = call(str(saved), str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_text(encoding="utf-8") == render_report(json.loads(saved.read_text()))
    usage = call(str(saved))
    assert usage.returncode == 2 and "usage:" in usage.stderr
    (tmp_path / "bad.json").write_text("{not json")
    bad = call(str(tmp_path / "bad.json"), str(tmp_path / "bad.html"))
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert "bad.json" in bad.stderr and not (tmp_path / "bad.html").exists()
    missing = call(str(tmp_path / "missing.json"), str(tmp_path / "x.html"))
    assert missing.returncode == 1 and "No such file" in missing.stderr
    assert "Traceback" not in bad.stderr + missing.stderr


def test_memory_sampler_keeps_the_peak_and_a_bounded_series():
    with MemorySampler(interval=0.002, max_samples=16) as memory:
        time.sleep(0.2)
        ballast = bytearray(64 << 20)  # touched pages: resident, so the tree's rss rises
        for i in range(0, len(ballast), 4096):
            ballast[i] = 1
        time.sleep(0.3)
        during = memory.samples
        del ballast
        time.sleep(0.1)
    samples = memory.samples
    assert 2 <= len(during) <= 16 and 2 <= len(samples) <= 16
    times = [t for t, _ in samples]
    assert times == sorted(times) and times[-1] - times[0] >= 0.5
    assert max(r for _, r in samples) == memory.peak  # merging kept the largest of each pair
    assert memory.peak - min(r for _, r in samples) > 48 << 20


def test_versions_names_installed_packages_without_importing_dask():
    code = ("import sys, json; from mapreduce.report import versions; v = versions(); "
            "print(json.dumps([v, 'dask' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, check=True).stdout
    found, dask_imported = json.loads(out)
    import platform
    from importlib import metadata

    import numpy

    assert not dask_imported
    assert found == versions()
    assert found["python"] == platform.python_version() and found["numpy"] == numpy.__version__
    assert found["project"] == metadata.version("mapreduce-top50")
    assert set(found) >= {"python", "project", "numpy", "dask"}


# -- in a real browser ---------------------------------------------------------------------

@pytest.fixture(scope="session")
def chromium() -> str:
    path, why = install_chromium()
    if path is None:
        pytest.skip(f"no headless Chromium for the browser test: {why}")
    return path


def test_report_in_headless_chromium(chromium, tmp_path, run):
    page = tmp_path / "report.html"
    write_report_html(str(page), run)
    control = tmp_path / "control.html"  # proves that a page's fetches are seen at all
    control.write_text('<!DOCTYPE html><img src="http://report-test.invalid/x.png">'
                       '<link rel="stylesheet" href="https://report-test.invalid/a.css">')
    with Browser(chromium, str(tmp_path / "profile")) as browser:
        seen = browser.open(page.as_uri(), screenshot=True)
        lanes = browser.evaluate(
            "JSON.stringify([...document.querySelectorAll('g.lane')].map(g => "
            "[g.dataset.worker, g.querySelectorAll('rect.bar').length]))", seen["session"])
        fetched = browser.open(control.as_uri())["requests"]
    assert seen["requests"] == [page.as_uri()], "the report fetched more than itself"
    assert sorted(fetched) == sorted([control.as_uri(), "http://report-test.invalid/x.png",
                                      "https://report-test.invalid/a.css"])
    per_worker = Counter(t["worker"] for t in run["tasks"])
    assert sorted(map(tuple, json.loads(lanes))) == sorted(per_worker.items())
    doc = parse(seen["html"])  # the DOM as the browser built it
    check_timeline(doc, run)
    check_offline(doc)
    assert doc.all("title")[0].full_text() == run["title"]  # no sample's script ran
    assert len(doc.all("svg")) == 5  # timeline, memory, three day charts
    shot = tmp_path / "report.png"
    shot.write_bytes(seen["png"])
    assert seen["png"][:8] == b"\x89PNG\r\n\x1a\n" and len(seen["png"]) > 50_000
    print(f"\nscreenshot: {shot}")


def test_chromium_is_not_installed_without_root(monkeypatch):
    """Where the test set-up may not install Chromium it says why, and the browser test skips."""
    from tests.mapreduce import browser

    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    monkeypatch.setattr(browser.os, "geteuid", lambda: 1000)
    assert browser.install_chromium() == (None, "Chromium is not installed and installing it "
                                                "needs root")
    monkeypatch.setattr(browser.os, "geteuid", lambda: 0)
    assert browser.install_chromium() == (None, "Chromium is not installed and there is no "
                                                "apt-get to install it with")
