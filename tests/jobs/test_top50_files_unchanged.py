"""The top-50 files of the job model are byte-identical to those of the code before it (main at
04d7321, where the pipeline was orchestrated by hand): the checksums below were made by that
code on this very week (narrow ids, 2 % corrupt lines of every kind the generator makes)."""
from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from jobs.generate import generate
from mapreduce.cli import main

#: sha256 of each log (proves the week is the one the checksums were made on) and of each file
LOGS = {
    "listen-20231231.log": "a3d3c6f005fa1e9836197f987b593492ce8aa66030d06097d1a620de9b557b07",
    "listen-20240101.log": "e1ee516e86de7422949856948e55093c688a822dc62e7f6df087c565807658ac",
    "listen-20240104.log": "55db6601e5940de4a9543d1684aa1a2fb9b60dab3c412b1331c29aeeec509e1f",
    "listen-20240107.log": "ed5b395a68ce9d4007e2832e01c952b20f312b5f542e2836f3a0ca51bba5a385",
}
FILES = {
    "country_top50_20240107.txt": "dbf2fa55a8619bcb4aa7b384487e1d60bd57e53db79520681ef17b7c47ce501a",
    "user_top50_20240107.txt": "889b8051dfb718260014fed4092bf6258efcc933552ceaf560551ab7deddf88c",
    "country_top5_3days_20240107.txt":
        "6e51f0304ea3881dd312cb6691cc9360fad0f9f2257df596af285aa43ae430d9",
    "user_top5_3days_20240107.txt":
        "3a5e83988f278fe39e411650b4a5fdbdedac72780341057cd5a60cd3ac6f15e3",
}


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_files_identical_to_the_previous_main(tmp_path, executor):
    logs, out = tmp_path / "logs", tmp_path / "out"
    generate(str(logs), days=8, lines_per_day=20000, end=dt.date(2024, 1, 7), seed=7,
             corrupt_share=0.02, id_width="narrow")
    assert {name: _sha(logs / name) for name in LOGS} == LOGS
    common = ["--logs", str(logs), "--out", str(out), "--quiet", "--executor", executor,
              "--workers", "2", "--date", "20240107"]
    assert main(["top50", *common, "--reducers", "4"]) == 0
    assert main(["top", *common, "--days", "3", "--top", "5"]) == 0
    assert {name: _sha(out / name) for name in FILES} == FILES
