"""Command-line rough edges: outputs inside the logs folder, --log-level/--log-file on every
command, and the docs' command lines against ``mapreduce COMMAND --help``."""
from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

from jobs.generate import generate

ROOT = Path(__file__).resolve().parents[2]
END = dt.date(2024, 1, 7)
COMMANDS = ("run", "top50", "top", "generate", "watch", "bench", "status")


def cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mapreduce.cli", *args], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("command", [
    ["top50"], ["top", "--days", "3"], ["run", "jobs.top50:TopSongs"], ["watch"], ["status"]])
@pytest.mark.parametrize("where", ["logs/out", "logs/deeper/out"])
def test_out_inside_the_logs_folder_is_a_bad_command_line(tmp_path, command, where):
    generate(str(tmp_path / "logs"), days=1, lines_per_day=10, end=END)
    run = cli(*command, "--logs", "logs", "--out", where, cwd=tmp_path, timeout=60)
    assert run.returncode == 2, (run.stdout, run.stderr)
    err = run.stderr.strip().splitlines()
    assert len(err) == 1 and "--out must not be" in err[0] and "logs folder" in err[0], err
    assert not (tmp_path / where).exists() or command == ["status"]


@lru_cache(maxsize=None)
def help_text(command: str) -> str:
    run = cli(command, "--help", cwd=ROOT)
    assert run.returncode == 0, run.stderr
    if command == "run":  # run's options depend on its job: a plain one and a windowed one
        windowed = cli(command, "jobs.top50:TopSongs", "--help", cwd=ROOT)
        assert windowed.returncode == 0, windowed.stderr
        return run.stdout + windowed.stdout
    return run.stdout


#: jobs the README defines in its own code blocks: their options are theirs, not run's
README_JOBS = re.compile(r"\brun \S+\.py:")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_log_level_log_file_and_umask(command):
    text = help_text(command)
    for option in ("--log-level", "--log-file", "--umask"):
        assert option in text, (command, option)


def test_log_level_and_log_file_outside_watch(tmp_path):
    generate(str(tmp_path / "logs"), days=2, lines_per_day=50, end=END)
    run = cli("top50", "--logs", "logs", "--out", "out", "--executor", "inline",
              "--log-level", "warning", "--log-file", "top50.log", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "INFO" not in run.stderr and "reducing" not in run.stderr
    assert "missing from the window" in (tmp_path / "top50.log").read_text()  # a warning
    run = cli("top50", "--logs", "logs", "--out", "out2", "--executor", "inline",
              "--log-level", "debug", "--log-file", "debug.log", "--quiet", cwd=tmp_path)
    assert run.returncode == 0 and "INFO" in (tmp_path / "debug.log").read_text()
    run = cli("generate", "--out", "more", "--days", "1", "--lines-per-day", "5",
              "--log-file", "nowhere/x.log", cwd=tmp_path)
    assert run.returncode == 2 and "--log-file" in run.stderr


# -- the docs against --help ------------------------------------------------------------------
_CMD = re.compile(r"\bmapreduce (" + "|".join(COMMANDS) + r")\b")
_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def logical_lines(text: str) -> list[str]:
    """Lines with their continuations joined: a trailing backslash, or, in a fenced block, an
    indented line under a command."""
    out: list[str] = []
    fenced = False
    joining = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced, joining = not fenced, False
            out.append("")
            continue
        if out and (joining or (fenced and line.startswith((" ", "\t")) and _CMD.search(out[-1]))):
            out[-1] += " " + line.strip()
        else:
            out.append(line)
        joining = line.rstrip().endswith("\\")
        if joining:
            out[-1] = out[-1].rstrip().rstrip("\\")
    return out


def shown_commands(path: Path) -> list[tuple[str, list[str]]]:
    """(command, options) of each ``mapreduce COMMAND ...`` the file shows."""
    found = []
    for line in logical_lines(path.read_text()):
        if README_JOBS.search(line):
            continue
        for m in _CMD.finditer(line):
            rest = line[m.end():]
            rest = re.split(r"`|&&|>>|;\s|\bmapreduce\b", rest)[0]
            found.append((m.group(1), _OPTION.findall(rest)))
    return found


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_option_the_docs_show_exists(doc):
    shown = shown_commands(doc)
    if doc.name in ("README.md", "watch.md"):
        assert shown, f"no mapreduce command line found in {doc.name}: the parser is broken"
    unknown = sorted({f"mapreduce {cmd} {opt}" for cmd, options in shown for opt in options
                      if not re.search(rf"(?<![\w-]){re.escape(opt)}\b", help_text(cmd))})
    assert unknown == [], f"{doc.name} shows options that --help does not list"


def test_the_readme_command_line_section_is_checked():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Command line"):]
    section = section[:section.index("\n## ", 5)]
    commands = {cmd for cmd, _ in shown_commands_of(section)}
    assert {"run", "top50", "top", "generate", "watch", "bench", "status"} <= commands


def shown_commands_of(text: str) -> list[tuple[str, list[str]]]:
    found = []
    for line in logical_lines(text):
        for m in _CMD.finditer(line):
            found.append((m.group(1), _OPTION.findall(line[m.end():])))
    return found
