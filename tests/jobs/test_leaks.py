"""Nothing leaks: a log linked to a secret file is refused, samples are short and can be off,
and what a run writes is no more readable than the logs folder."""
from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import sys
from pathlib import Path

import orjson

from jobs.generate import generate
from tests.jobs.test_watch import daemons, wait_until  # noqa: F401 - the fixture, shared

ROOT = Path(__file__).resolve().parents[2]
END = dt.date(2024, 1, 7)
SECRET = "root:$6$SECRETSALT$TOPSECRETHASHVALUE:19000:0:99999:7:::"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mapreduce.cli", *args], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=300)


def plant(tmp_path: Path) -> tuple[Path, Path]:
    """Logs for six days and, for the seventh, a link to a 'shadow' file outside the folder."""
    logs = tmp_path / "logs"
    generate(str(logs), days=7, lines_per_day=500, end=END)
    secret = tmp_path / "etc" / "shadow"
    secret.parent.mkdir()
    secret.write_text("".join(f"{SECRET}{i}\n" for i in range(50)))
    secret.chmod(0o640)
    link = logs / f"listen-{END:%Y%m%d}.log"
    link.unlink()
    link.symlink_to(secret)
    return logs, link


def leaked(*folders: Path) -> list[str]:
    found = []
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                if b"SECRET" in data or b"TOPSECRET" in data:
                    found.append(str(path))
    return found


def test_a_log_linked_outside_the_folder_is_refused_and_nothing_of_it_is_written(tmp_path):
    logs, link = plant(tmp_path)
    run = cli("top50", "--logs", "logs", "--out", "out", "--quiet", "--executor", "inline",
              cwd=tmp_path)
    assert run.returncode == 1
    err = run.stderr.strip().splitlines()
    assert len(err) == 1 and str(link.name) in err[0] and "--allow-links" in err[0], err
    # outside the window, the link is only warned about; the run reads none of it
    run = cli("top50", "--logs", "logs", "--out", "out", "--quiet", "--executor", "inline",
              "--date", f"{END - dt.timedelta(days=1):%Y%m%d}", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    # allowed, but with --no-samples: the secret's lines are counted as corrupt, never copied
    run = cli("top50", "--logs", "logs", "--out", "out", "--quiet", "--executor", "inline",
              "--allow-links", "--no-samples", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    summary = orjson.loads((tmp_path / "out" / f"top50_{END:%Y%m%d}.summary.json").read_bytes())
    assert summary["corrupt_lines"][f"{END:%Y-%m-%d}"] == 50
    assert leaked(tmp_path / "out") == []
    # status looks without following the link either
    status = cli("status", "--logs", "logs", "--out", "out", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    row = [d for d in orjson.loads(status.stdout)["days"] if d["day"] == f"{END:%Y-%m-%d}"][0]
    assert row["state"] == "refused" and "outside the logs folder" in row["reason"]


def test_the_daemon_refuses_a_linked_log_and_computes_the_rest(tmp_path, daemons):
    plant(tmp_path)
    w = daemons(tmp_path)
    wait_until(lambda: len(w.runs()) >= 6 and w.events()[-1].get("event") == "idle",
               "six runs, then idle", daemon=w)
    unreadable = w.events("unreadable")
    assert unreadable and "outside the logs folder" in unreadable[0]["reason"]
    # every date but the link's own: the windows of the six earlier dates do not hold it
    assert w.runs() == [f"{END - dt.timedelta(days=i):%Y-%m-%d}" for i in range(6, 0, -1)]
    assert leaked(w.out) == []
    assert w.stop() == 0


def test_samples_are_cut_at_200_characters(tmp_path):
    logs = tmp_path / "logs"
    generate(str(logs), days=1, lines_per_day=100, end=END)
    with open(logs / f"listen-{END:%Y%m%d}.log", "ab") as f:
        f.write(b"x" * 5000 + b"\n")
    run = cli("top50", "--logs", "logs", "--out", "out", "--quiet", "--executor", "inline",
              cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    manifest = orjson.loads((tmp_path / "out/store/daily" / f"day-{END:%Y%m%d}" /
                             "manifest.json").read_bytes())
    texts = [s["line"] for s in manifest["corrupt_samples"]]
    assert texts and all(len(t) <= 200 for t in texts), texts


def modes(folder: Path) -> dict[str, int]:
    return {str(p): stat.S_IMODE(p.lstat().st_mode) for p in [folder, *folder.rglob("*")]
            if not p.is_symlink()}


def test_what_is_written_is_no_more_readable_than_the_logs_folder(tmp_path):
    logs = tmp_path / "logs"
    generate(str(logs), days=2, lines_per_day=300, end=END)
    logs.chmod(0o750)  # others may not read the logs
    prom = tmp_path / "m.prom"
    run = cli("top50", "--logs", "logs", "--out", "out", "--quiet", "--workers", "2",
              "--metrics-file", str(prom), "--report", "run.html", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    written = {**modes(tmp_path / "out"), **{str(p): stat.S_IMODE(p.stat().st_mode)
                                             for p in (prom, tmp_path / "run.html")}}
    assert len(written) > 10
    assert {p: oct(m) for p, m in written.items() if m & 0o007} == {}
    # --umask sets it outright
    run = cli("top50", "--logs", "logs", "--out", "out2", "--quiet", "--executor", "inline",
              "--umask", "077", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert {p: oct(m) for p, m in modes(tmp_path / "out2").items() if m & 0o077} == {}
