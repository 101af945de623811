"""The line rule, called directly on the job's bulk map (no engine)."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from jobs.listens import ISO_CODES, log_date, parse_block
from jobs.top50 import DailyListens
from tests.oracle import parse_line, split_lines

GOOD = [b"1|2|FR", b"007|0002|GB", b"9223372036854775807|9223372036854775807|ZW",
        b"123456789012345678|1|AD", b"1|2|FR\r"]
BAD = [b"", b" ", b"1 |2|FR", b"1|2 |FR", b"1|2|FR ", b"1|2", b"1|2|FR|", b"1||FR", b"|2|FR",
       b"+1|2|FR", b"-1|2|FR", b"1|2|fr", b"1|2|UK", b"1|2|ZZ", b"1|2|FRA", b"1|2|F",
       "1|2|FR\u00e9".encode(), b"1|2|\xff\xfe", b"1\x00|2|FR", b"1|2|FR\r\r", b"1\r|2|FR",
       b"9223372036854775808|1|FR", b"1|99999999999999999999|FR", b"00000000000000000001|1|FR",
       b"1a|2|FR", b"1\t2\tFR", "\ufeff1|2|FR".encode()]


def test_valid_and_corrupt_lines():
    block = b"\n".join(GOOD + BAD) + b"\n"
    parsed = parse_block(block, offset=1000, max_samples=100)
    assert parsed["lines"] == len(GOOD) + len(BAD)
    assert parsed["corrupt"] == len(BAD)
    assert parsed["song"].tolist() == [1, 7, 2**63 - 1, 123456789012345678, 1]
    assert parsed["user"].tolist() == [2, 2, 2**63 - 1, 1, 2]
    assert [ISO_CODES[c] for c in parsed["country"]] == ["FR", "GB", "ZW", "AD", "FR"]
    samples = parsed["samples"]
    assert len(samples) == len(BAD)
    first_bad = 1000 + sum(len(g) + 1 for g in GOOD)
    assert samples[0] == {"offset": first_bad, "line": ""}
    assert samples[2] == {"offset": first_bad + 3, "line": "1 |2|FR"}


def test_last_line_without_newline_and_empty_block():
    assert parse_block(b"5|6|DE")["song"].tolist() == [5]
    empty = parse_block(b"")
    assert empty["lines"] == 0 and empty["corrupt"] == 0


lines = st.one_of(
    st.sampled_from(GOOD + BAD),
    st.builds(lambda a, b, c: a + b"|" + b + b"|" + c,
              st.from_regex(rb"\A[0-9+ -]{0,21}\Z"), st.from_regex(rb"\A[0-9]{0,20}\Z"),
              st.sampled_from([b"FR", b"US", b"UK", b"fr", b"F", b"FRR", b"ZW\r"])),
    st.binary(max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(lines, max_size=30), st.booleans())
def test_parse_agrees_with_the_plain_rule(rows, final_newline):
    rows = [r for r in rows if b"\n" not in r]
    block = b"\n".join(rows) + (b"\n" if final_newline and rows else b"")
    expected = [p for p in (parse_line(r) for r in split_lines(block)) if p]
    parsed = parse_block(block)
    got = list(zip(parsed["song"].tolist(), parsed["user"].tolist(),
                   [ISO_CODES[c] for c in parsed["country"]]))
    assert got == expected
    assert parsed["lines"] == len(split_lines(block))


def test_daily_job_map_and_combine():
    job = DailyListens()
    tables, stats = job.map_block(b"1|10|FR\n1|10|FR\n2|10|FR\n1|11|DE\nbad\n", 0)
    assert stats["lines"] == 5 and stats["corrupt_lines"] == 1
    country = job.map_combine("country", [tables["country"]])  # summed once per spill
    assert list(zip(country["group"], country["song"], country["count"])) == [
        (ISO_CODES.index("DE"), 1, 1), (ISO_CODES.index("FR"), 1, 2), (ISO_CODES.index("FR"), 2, 1)]
    once = job.combine("user", [tables["user"]])
    assert list(zip(once["group"], once["song"], once["count"])) == [(10, 1, 2), (10, 2, 1), (11, 1, 1)]
    merged = job.combine("user", [once, tables["user"]])  # summed with raw pairs
    assert merged["count"].tolist() == [4, 2, 2]
    parts = job.partition("user", merged, 8)
    assert parts.dtype == np.uint16 and (parts[0] == parts[1])  # same user, same partition


def test_log_names():
    assert str(log_date("listen-20240229.log")) == "2024-02-29"
    for name in ["listen-20231345.log", "listen-20230229.log", "listen-2024011.log",
                 "listen-20240101.log.tmp", "xlisten-20240101.log", "listen-20240101.LOG"]:
        assert log_date(name) is None
