"""The benchmark's long-window case at a tiny scale: the store it builds from the generator's
model is one the window jobs accept, rolled-up and from-scratch files agree (the case checks
it), and the table with its extrapolation is printed."""
from __future__ import annotations

import orjson

from jobs.bench_long import END, build_store, day_listens
from mapreduce.cli import main


def test_long_window_case_runs_and_prints_its_extrapolation(tmp_path, capsys):
    data = tmp_path / "data"
    code = main(["bench", "--long-window", "--data", str(data), "--long-rate", "1500",
                 "--long-days", "9,150", "--long-rates", "3000", "--long-rate-days", "9",
                 "--workers", "2"])
    assert code == 0
    out = capsys.readouterr().out
    assert "extrapolation to 30,000,000 lines a day (150 days)" in out
    assert "B a stored row, all of it (measured after the runs" in out
    result = orjson.loads((data / "bench-long.json").read_bytes())
    cases = {(c["lines_per_day"], c["days"]): c for c in result["cases"]}
    assert set(cases) == {(1500, 9), (1500, 150), (3000, 9)}
    long = cases[(1500, 150)]
    # every day of the store is read: a 9-day case must not let retention delete the others
    assert long["scratch"]["rows_read"] > 10 * cases[(1500, 9)]["scratch"]["rows_read"]
    # 150 days hold a whole block of 64: the next day reads it, fewer rows than the days
    assert long["next_day"]["rows_read"] < long["scratch"]["rows_read"]
    # and the first run keyed the days of the block that ended 14 days before it
    assert long["store"]["keyed_days"] > 0 and long["store"]["blocks"] > 0
    assert all(c[k]["peak_rss_bytes"] > 0 for c in cases.values()
               for k in ("scratch", "first", "next_day"))
    assert 0 < long["bytes_per_row"] < 8
    assert {c["partitions"] for c in cases.values()} == {8}


def test_a_full_rate_store_has_the_daily_jobs_partitions():
    from jobs.bench_long import partitions_for

    assert partitions_for(30_000_000) == 64 and partitions_for(8_000_000) == 64
    assert partitions_for(1_000_000) == 8


def test_model_store_days_match_the_generator_population(tmp_path):
    from jobs.generate import make_population

    info = build_store(str(tmp_path / "s"), 2000, 2, workers=1)
    assert info["days"] == 2 and info["rows"] > 0
    pop = make_population(42, 166, 133)
    song, user, country = day_listens(pop, 42, END, 2000)
    assert len(song) == 2000 and set(user.tolist()) <= set(pop.users.tolist())
