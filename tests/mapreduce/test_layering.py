"""The layers point one way: the framework never imports the jobs built on it, and its tests
never import them either."""
from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _imports(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_framework_and_its_tests_never_import_jobs():
    files = [*(ROOT / "mapreduce").glob("*.py"), *(ROOT / "tests" / "mapreduce").glob("*.py")]
    assert len(files) > 20
    offenders = {str(f.relative_to(ROOT)): sorted(n for n in _imports(f)
                                                  if n == "jobs" or n.startswith("jobs."))
                 for f in files}
    assert {f: n for f, n in offenders.items() if n} == {}
