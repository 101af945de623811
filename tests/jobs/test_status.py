"""``mapreduce status`` on a real store and outputs, and ``top50 --recompute``."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from pathlib import Path

import orjson

from jobs.generate import generate
from mapreduce.store import Store, _manifest_checksum

ROOT = Path(__file__).resolve().parents[2]
END = dt.date(2024, 1, 7)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mapreduce.cli", *args], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=300)


def status(tmp_path: Path, *extra: str) -> tuple[int, dict]:
    run = cli("status", "--logs", "logs", "--out", "out", "--json", *extra, cwd=tmp_path)
    assert run.returncode in (0, 1), run.stderr
    return run.returncode, orjson.loads(run.stdout)


def by_day(report: dict) -> dict[str, dict]:
    return {d["day"]: d for d in report["days"]}


def edit_in_place_keeping_size_and_time(path: Path) -> None:
    """Change bytes outside the identity's three sampled 64 KiB windows, then put the mtime
    back: the identity cannot see it, only a whole-file hash can."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    at = len(data) // 4  # between the head and middle samples
    at = data.index(b"\n", at) + 1
    end = data.index(b"|", at)
    data[at:end] = b"9" * (end - at)  # another song id, same length
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_status_reports_days_outputs_lock_and_disk(tmp_path):
    generate(str(tmp_path / "logs"), days=8, lines_per_day=400, end=END, corrupt_share=0.01)
    d = lambda n: END - dt.timedelta(days=n)  # noqa: E731
    (tmp_path / "out").mkdir()
    run = cli("top50", "--logs", "logs", "--out", "out", "--quiet", "--executor", "inline",
              "--date", f"{d(1):%Y%m%d}", "--report", "out/top50_" f"{d(1):%Y%m%d}.report.html",
              cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    with open(tmp_path / "logs" / f"listen-{d(3):%Y%m%d}.log", "ab") as f:
        f.write(b"1|2|FR\n")  # changed since it was reduced
    manifest = tmp_path / "out/store/daily" / f"day-{d(4):%Y%m%d}" / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"lines"', b'"linez"', 1))  # damaged
    code, report = status(tmp_path)
    assert code == 0
    days = by_day(report)
    assert days[f"{d(2):%Y-%m-%d}"]["state"] == "cached"
    assert 0 < days[f"{d(2):%Y-%m-%d}"]["corrupt_share"] < 0.05
    assert days[f"{d(3):%Y-%m-%d}"]["state"] == "stale"
    assert "its log changed (size" in days[f"{d(3):%Y-%m-%d}"]["reason"]
    assert days[f"{d(4):%Y-%m-%d}"]["state"] == "damaged"
    assert days[f"{END:%Y-%m-%d}"]["state"] == "missing"  # never reduced
    outputs = {o["date"]: o for o in report["outputs"]}
    assert outputs[f"{END:%Y-%m-%d}"]["files"] == "missing"
    computed = outputs[f"{d(1):%Y-%m-%d}"]
    assert computed["files"] == "present" and computed["report"].endswith(".report.html")
    assert computed["stale"]  # a log of its window changed
    assert report["lock"] == {"held": False, "pid": None}
    assert report["disk"]["store_bytes"] > 0 and report["disk"]["output_bytes"] > 0
    text = cli("status", "--logs", "logs", "--out", "out", cwd=tmp_path)
    assert text.returncode == 0 and "stale" in text.stdout and "damaged" in text.stdout

    # a lock held by this process is reported with its pid
    store = Store(str(tmp_path / "out" / "store"), step="daily")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.locked():
            held.set()
            release.wait(60)

    t = threading.Thread(target=hold)
    t.start()
    try:
        held.wait(10)
        _, report = status(tmp_path)
        assert report["lock"] == {"held": True, "pid": os.getpid()}
    finally:
        release.set()
        t.join()


def test_verify_finds_an_edit_the_identity_cannot_see_and_recompute_fixes_it(tmp_path):
    generate(str(tmp_path / "logs"), days=3, lines_per_day=20000, end=END)
    run = cli("top50", "--logs", "logs", "--out", "out", "--quiet", "--executor", "inline",
              cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    before = (tmp_path / "out" / f"user_top50_{END:%Y%m%d}.txt").read_bytes()
    log = tmp_path / "logs" / f"listen-{END:%Y%m%d}.log"
    edit_in_place_keeping_size_and_time(log)
    code, report = status(tmp_path)
    assert code == 0 and by_day(report)[f"{END:%Y-%m-%d}"]["state"] == "cached"  # not seen
    code, report = status(tmp_path, "--verify")
    days = by_day(report)
    assert code == 1
    assert days[f"{END:%Y-%m-%d}"]["verify"] == "wrong"
    assert "--recompute" in days[f"{END:%Y-%m-%d}"]["reason"]
    assert days[f"{END - dt.timedelta(days=1):%Y-%m-%d}"]["verify"] == "ok"
    run = cli("top50", "--logs", "logs", "--out", "out", "--quiet", "--executor", "inline",
              "--recompute", f"{END:%Y%m%d}", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "20000 lines read" in run.stdout  # that day only
    assert (tmp_path / "out" / f"user_top50_{END:%Y%m%d}.txt").read_bytes() != before
    code, report = status(tmp_path, "--verify")
    assert code == 0 and {d["verify"] for d in report["days"]} == {"ok"}
    run = cli("top50", "--logs", "logs", "--out", "out", "--quiet", "--executor", "inline",
              "--recompute", "all", cwd=tmp_path)
    assert run.returncode == 0 and "60000 lines read" in run.stdout, run.stderr
    # a manifest from before the hash was kept: "unknown", not "ok"
    path = tmp_path / "out/store/daily" / f"day-{END:%Y%m%d}" / "manifest.json"
    manifest = orjson.loads(path.read_bytes())
    del manifest["source"]["blake2b"]
    manifest["checksum"] = _manifest_checksum(manifest)
    path.write_bytes(orjson.dumps(manifest))
    code, report = status(tmp_path, "--verify")
    assert code == 0 and by_day(report)[f"{END:%Y-%m-%d}"]["verify"] == "unknown"


def test_recompute_takes_real_dates_only(tmp_path):
    generate(str(tmp_path / "logs"), days=1, lines_per_day=10, end=END)
    run = cli("top50", "--logs", "logs", "--out", "out", "--recompute", "20240231",
              cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.startswith("error: --recompute")
