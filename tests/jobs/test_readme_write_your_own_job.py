"""Every code block of the README's "Write your own job" section runs as printed, in order, in
an empty folder: a block after ``<!-- file: NAME -->`` is saved as NAME (a job file, a test
file), one after ``<!-- same as: PATH -->`` must be PATH of the project word for word, other
``python`` blocks are run as scripts and ``sh`` blocks with bash (``-e -o pipefail``), where
``mapreduce`` and ``python`` are this interpreter's. The section cannot rot."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import ROOT

SECTION = "## Write your own job"
BLOCK = re.compile(r"(?:<!-- (file|same as): (\S+) -->\n)?```(\w+)\n(.*?)^```\n",
                   re.DOTALL | re.MULTILINE)


def section_blocks() -> list[tuple[str | None, str | None, str, str]]:
    """(marker, its argument, language, code) of each fenced block of the section, in order."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    start = readme.index(SECTION + "\n")
    end = readme.find("\n## ", start + len(SECTION))
    return [m.groups() for m in BLOCK.finditer(readme[start:end if end >= 0 else None])]


def _run(command: list[str], folder) -> None:
    env = {**os.environ, "PYTHONPATH": ROOT,
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"


def test_every_block_of_the_section_runs(tmp_path):
    blocks = section_blocks()
    kinds = [(marker, lang) for marker, _, lang, _ in blocks]
    # the promised examples are all there: job files, runs, a bulk job, a test run with pytest
    assert kinds.count(("file", "python")) >= 4 and kinds.count((None, "sh")) >= 5
    assert ("same as", "python") in kinds and (None, "python") in kinds
    for i, (marker, argument, lang, code) in enumerate(blocks):
        if marker == "same as":
            with open(os.path.join(ROOT, argument), encoding="utf-8") as f:
                assert code == f.read(), f"README block {i} differs from {argument}"
        elif marker == "file":
            (tmp_path / argument).write_text(code)
        elif lang == "python":
            script = tmp_path / f"readme_block_{i}.py"
            script.write_text(code)
            _run([sys.executable, str(script)], tmp_path)
        elif lang == "sh":
            _run(["bash", "-e", "-o", "pipefail", "-c", code], tmp_path)
        else:
            raise AssertionError(f"README block {i}: no rule to run a {lang!r} block")
    # what the blocks say happened did happen
    assert (tmp_path / "out" / "my_job.tsv").exists()
    users = [int(line.split("\t")[0]) for line in (tmp_path / "out" / "my_job.tsv").open()]
    assert users == sorted(users) and len(users) > 100
    assert (tmp_path / "out" / "country_distinct_listeners_7days_20240107.txt").exists()
