"""``parse_block`` against a plain-Python parser of one line at a time, on lines of every shape.

The reference below is written from the rule in ``jobs.listens`` with no regex and no numpy:
split off the ``\\n``, drop one trailing ``\\r``, split on ``|``, and check each field byte by byte.
The blocks mix id widths in different proportions on purpose: the parser chooses between parsing a
group of digits for all rows or for a subset by the share of rows needing it, so both choices (and
every word size) must be exercised.
"""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from jobs.listens import ISO_CODES, SAMPLE_CHARS, parse_block
from tests.mapreduce.backends import BACKENDS, backend

CODES = frozenset(c.encode() for c in ISO_CODES)
DIGITS = frozenset(b"0123456789")


def reference_line(line: bytes) -> tuple[int, int, int] | None:
    """(song, user, country index) of a valid line (its '\\n' removed), else None."""
    if line.endswith(b"\r"):
        line = line[:-1]
    fields = line.split(b"|")
    if len(fields) != 3:
        return None
    song, user, country = fields
    ids = []
    for field in (song, user):
        if not 1 <= len(field) <= 19 or any(b not in DIGITS for b in field):
            return None
        value = int(field.decode("ascii"))
        if value > 2**63 - 1:
            return None
        ids.append(value)
    if country not in CODES:
        return None
    return ids[0], ids[1], ISO_CODES.index(country.decode())


def reference_block(block: bytes, offset: int, max_samples: int) -> dict:
    """What parse_block must return, one line at a time."""
    songs, users, countries, samples = [], [], [], []
    pos, lines = 0, 0
    while pos < len(block):
        nl = block.find(b"\n", pos)
        end = len(block) if nl < 0 else nl
        line = block[pos:end]
        lines += 1
        parsed = reference_line(line)
        if parsed:
            songs.append(parsed[0])
            users.append(parsed[1])
            countries.append(parsed[2])
        elif len(samples) < max_samples:
            text = line[:-1] if line.endswith(b"\r") else line
            samples.append({"offset": offset + pos,
                            "line": text[:SAMPLE_CHARS].decode("utf-8", "backslashreplace")})
        pos = end + 1
    return {"song": songs, "user": users, "country": countries, "lines": lines,
            "corrupt": lines - len(songs), "samples": samples}


def digits_of_width(width: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=width, max_size=width).map(
        lambda b: bytes(48 + x % 10 for x in b))


special_ids = st.sampled_from([b"9223372036854775807", b"9223372036854775808",
                               b"09223372036854775807", b"18446744073709551615",
                               b"18446744073709551616", b"99999999999999999999",
                               b"0000000000000000000", b"0", b"00", b"1" + b"0" * 18])
noise = st.sampled_from([b" ", b"+", b"-", b"a", b"\x00", b"\r", b"\xff", b"\xc3", b"\xc3\xa9",
                         b"\xed\xa0\x80", b"|", b"/", b":", b"\t", b"\xf0\x9f\x8e\xb5"])


@st.composite
def id_field(draw, widths: list[int]) -> bytes:
    kind = draw(st.integers(0, 19))
    if kind == 0:
        return draw(special_ids)
    if kind == 1:  # a digit run with something inserted
        digits = draw(digits_of_width(draw(st.integers(0, 12))))
        at = draw(st.integers(0, len(digits)))
        return digits[:at] + draw(noise) + digits[at:]
    if kind == 2:
        return draw(st.binary(max_size=6)).replace(b"\n", b"")
    return draw(digits_of_width(draw(st.sampled_from(widths))))


countries = st.one_of(
    st.sampled_from([c.encode() for c in ISO_CODES]),
    st.sampled_from([b"UK", b"ZZ", b"fr", b"Fr", b"F", b"FRA", b"", b"F\x00", b"\xc3\xa9",
                     b"US\xff", b"U|", b"E\r"]),
)


@st.composite
def line(draw, widths: list[int]) -> bytes:
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return draw(st.binary(max_size=30)).replace(b"\n", b"")
    fields = [draw(id_field(widths)), draw(id_field(widths)), draw(countries)]
    if shape == 1:  # a field too many or too few
        fields = fields + [draw(id_field(widths))] if draw(st.booleans()) else fields[:2]
    text = b"|".join(fields)
    ending = draw(st.sampled_from([b"", b"", b"", b"\r", b"\r\r", b"\x00", b" "]))
    return text + ending


@st.composite
def blocks(draw) -> bytes:
    # a block's own mix of widths, so the share of rows needing a second or third word varies
    widths = draw(st.lists(st.integers(1, 21), min_size=1, max_size=4))
    rows = draw(st.lists(line(widths), max_size=40))
    return b"\n".join(rows) + (b"\n" if rows and draw(st.booleans()) else b"")


@settings(max_examples=600, deadline=None)
@given(blocks(), st.integers(0, 10**9), st.integers(0, 5))
def test_parse_block_agrees_with_the_one_line_reference(block, offset, max_samples):
    want = reference_block(block, offset, max_samples)
    for name in BACKENDS:
        with backend(name):
            got = parse_block(block, offset, max_samples)
        assert got["song"].tolist() == want["song"], name
        assert got["user"].tolist() == want["user"], name
        assert got["country"].tolist() == want["country"], name
        for key in ("lines", "corrupt", "samples"):
            assert got[key] == want[key], (name, key)
        for key in ("song", "user", "country"):
            assert got[key].dtype.kind == "u", (name, key)


def test_widths_1_to_19_at_every_share():
    """Every width next to every other, in blocks where each is a large or a small share."""
    for major in range(1, 20):
        for minor in range(1, 20):
            rows = []
            for i in range(40):
                width = major if i % 10 else minor
                song = str(10 ** (width - 1) + i)[:width].encode()
                user = (b"9" * width)[:width] if width < 19 else b"9223372036854775807"
                rows.append(song + b"|" + user + b"|" + ISO_CODES[i].encode())
            block = b"\n".join(rows) + b"\n"
            for name in BACKENDS:
                with backend(name):
                    parsed = parse_block(block)
                assert parsed["song"].tolist() == [int(r.split(b"|")[0]) for r in rows], name
                assert parsed["user"].tolist() == [int(r.split(b"|")[1]) for r in rows], name


def test_first_line_ids_at_the_start_of_the_block():
    # words read before the first field fall in the padding, whatever the field's width
    for width in range(1, 20):
        song = b"1" * width
        for block in (song + b"|2|FR", song + b"|2|FR\n", song + b"|" + song + b"|FR\r\n"):
            for name in BACKENDS:
                with backend(name):
                    assert parse_block(block)["song"].tolist() == [int(song)], name
