"""The listen log: file names and the line format, parsed in bulk (every listen job reads it so).

A line is ``sng_id|user_id|country``. It is valid when, after removing its ``\\n`` and one trailing
``\\r``, it has exactly three ``|``-separated fields, ``sng_id`` and ``user_id`` are 1 to 19 ASCII
digits worth at most 2**63-1, and ``country`` is one of the 249 assigned ISO 3166-1 alpha-2 codes.
Anything else is corrupt: counted, sampled (byte offset and text) and otherwise ignored.

Parsing is one compiled pass over a block's bytes (``mapreduce.kernels``: each line checked and
converted as it is scanned). The numpy reference, used with ``MAPREDUCE_KERNELS=numpy``, is
vectorised over the block: newline and ``|`` positions come from one numpy scan; each id is read
as one uint64 per eight digits (a 10-digit id, the common width, takes two), validated and
converted eight digits at a time with SWAR arithmetic.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np

from mapreduce import kernels
from mapreduce.codec import narrowest
from mapreduce.inputs import DatedInputs

ISO_CODES: tuple[str, ...] = tuple("""
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT
BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH
ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT
HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS
LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI
NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG
SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG
UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
""".split())
assert len(ISO_CODES) == 249 and list(ISO_CODES) == sorted(ISO_CODES)

#: two code bytes (first * 256 + second) -> index in ISO_CODES, -1 when not an assigned code.
#: Indices follow alphabetical order, so sorting by index sorts by code.
COUNTRY_INDEX = np.full(65536, -1, dtype=np.int16)
for _i, _code in enumerate(ISO_CODES):
    COUNTRY_INDEX[ord(_code[0]) * 256 + ord(_code[1])] = _i
COUNTRY_BYTES = np.frombuffer("".join(ISO_CODES).encode(), dtype=np.uint8).reshape(-1, 2)

MAX_ID = 2**63 - 1
MAX_DIGITS = 19
SAMPLE_CHARS = 200
#: one log a day, named by its date
LISTEN_LOGS = DatedInputs("listen-{date}.log")


def log_date(name: str) -> dt.date | None:
    """The date of a ``listen-YYYYMMDD.log`` name with a real calendar date, else None."""
    return LISTEN_LOGS.date_of(name)


def log_name(day: dt.date) -> str:
    return LISTEN_LOGS.name_of(day)


_PAD = 32  # bytes before the block: the words before any field's first byte are in range


@dataclass(frozen=True)
class _Word:
    """How to read and convert ``nbytes`` (2 or 8) digits as one unsigned integer (SWAR)."""

    nbytes: int
    dtype: type
    zeros: Any       # '0' in every byte
    high: Any        # 0xF0 in every byte
    six: Any         # 0x06 in every byte

    @classmethod
    def of(cls, nbytes: int) -> "_Word":
        dtype = {2: np.uint16, 8: np.uint64}[nbytes]
        def every_byte(b: int) -> Any:
            return dtype(int.from_bytes(bytes([b]) * nbytes, "little"))
        return cls(nbytes, dtype, every_byte(0x30), every_byte(0xF0), every_byte(0x06))

    def tables(self, word: int, low: int) -> np.ndarray:
        """Indexed by field length 0..19: the mask of the field's bytes among the ``nbytes``
        ending ``8 * word`` bytes before the field's end, for fields using more than ``low`` of
        that word's bytes (for others, no byte: they read as all '0'). A table look-up per row
        replaces the shifts and compares that would make the mask."""
        keep = np.zeros(MAX_DIGITS + 1, dtype=self.dtype)
        full = (1 << (8 * self.nbytes)) - 1
        for length in range(MAX_DIGITS + 1):
            used = min(max(length - 8 * word, 0), 8)  # the field's bytes are the word's last ones
            if low < used <= self.nbytes:
                keep[length] = full & ~((1 << (8 * (self.nbytes - used))) - 1)
        return keep

    def parse(self, words: np.ndarray, length: np.ndarray,
              keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values of ``words`` (first character in the lowest byte), the bytes outside the mask
        ``keep[length]`` read as '0', and whether the bytes inside are all digits. Operations
        are in place: at a few hundred thousand rows a fresh array costs page faults."""
        dt = self.dtype
        mask = np.take(keep, length)
        x = words & mask
        np.invert(mask, out=mask)
        mask &= self.zeros
        x |= mask  # the other bytes are '0'
        del mask
        t = x & self.high
        y = x + self.six
        y &= self.high
        t ^= self.zeros
        y ^= self.zeros
        t |= y
        ok = t == 0  # every byte 0x30..0x39
        with np.errstate(over="ignore"):
            # the simdjson "eight digits" steps: adjacent bytes, then pairs, then quads combine
            x -= self.zeros
            np.right_shift(x, dt(8), out=t)
            x *= dt(10)
            x += t
            if self.nbytes == 2:
                x &= dt(0xFF)
            else:
                np.right_shift(x, dt(16), out=t)
                t &= dt(0x000000FF000000FF)
                t *= dt(1 + (10000 << 32))
                x &= dt(0x000000FF000000FF)
                x *= dt(100 + (1000000 << 32))
                x += t
                x >>= dt(32)
        return x, ok


_WORDS = {n: _Word.of(n) for n in (2, 8)}
#: word 0 of every field, as 8 bytes; words 1 and 2 as 2 bytes for the rows using at most 2 of
#: them, or as 8 bytes for the rows using more than ``low`` bytes: (word, nbytes, low) -> tables
_FIRST = _WORDS[8].tables(0, 0)
_MORE = {(word, n, low): _WORDS[n].tables(word, low)
         for word in (1, 2) for n, low in ((2, 0), (8, 0), (8, 2))}
#: the share of rows from which a group is parsed for all rows rather than for a subset
_ALL_ROWS_SHARE = 0.3


def _parse_ids(ending: dict[tuple[int, int], np.ndarray], end: np.ndarray,
               length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fields of ``length`` (0..19) bytes ending before ``end`` as integers; returns ``(values,
    ok)``; a length of 0 reads as 0 (the caller rejects it). ``ending[n, back][q]`` is the
    ``n``-byte unsigned integer ending ``back`` bytes before position ``q``.

    Each field's last eight bytes are one uint64; its digits before those take one more word per
    eight, read as 2 bytes when the row's digits there fit (a 10-digit id's first two digits are
    a uint16), else as 8. A group of rows reading the same word is parsed for all rows when it is
    a large share of them (the other rows read as '0's: value 0, valid), so the common widths
    cost no indexing of a subset; small groups are done apart.
    """
    values, ok = _WORDS[8].parse(ending[8, 0][end], length, _FIRST)
    counts = np.bincount(length, minlength=MAX_DIGITS + 1)
    for word in (1, 2):
        back = 8 * word
        short, wide = int(counts[back + 1:back + 3].sum()), int(counts[back + 3:].sum())
        # (bytes read, fewest of this word's bytes a row uses to be in the group, shortest and
        # longest length in it, rows in it)
        if wide >= _ALL_ROWS_SHARE * len(length):  # one uint64 pass serves the short rows too
            groups = [(8, 0, back + 1, MAX_DIGITS, short + wide)]
        else:
            groups = [(2, 0, back + 1, back + 2, short), (8, 2, back + 3, MAX_DIGITS, wide)]
        for nbytes, low, shortest, longest, count in groups:
            if not count:
                continue
            reader, tables = _WORDS[nbytes], _MORE[word, nbytes, low]
            scale = np.uint64(10 ** back)
            if count >= _ALL_ROWS_SHARE * len(length):
                more, more_ok = reader.parse(ending[nbytes, back][end], length, tables)
                ok &= more_ok
                values += more * scale  # 19 digits fit in uint64; checked below
            else:
                rows = np.flatnonzero((length >= shortest) & (length <= longest))
                more, more_ok = reader.parse(ending[nbytes, back][end[rows]], length[rows], tables)
                ok[rows] &= more_ok
                values[rows] += more * scale
    if counts[MAX_DIGITS]:
        ok &= values <= np.uint64(MAX_ID)  # only 19 digits can exceed it
    return values.view(np.int64), ok


#: the country index by the two code bytes read as one little-endian uint16 (first + 256 * second)
_COUNTRY_LE16 = np.full(65536, -1, dtype=np.int16)
for _i, _code in enumerate(ISO_CODES):
    _COUNTRY_LE16[ord(_code[0]) + 256 * ord(_code[1])] = _i
_NEWLINE, _CR_NEWLINE = np.uint32(10), np.uint32(13 + 256 * 10)


def _strided(buf: np.ndarray, start: int, count: int, dtype: type) -> np.ndarray:
    """``count`` values of ``dtype``, element i made of the bytes from ``buf[start + i]`` on
    (unaligned, overlapping, read-only). The caller keeps every element inside ``buf``."""
    size = np.dtype(dtype).itemsize
    assert 0 <= start and start + count - 1 + size <= len(buf)
    return np.lib.stride_tricks.as_strided(buf[start:start + size].view(dtype), shape=(count,),
                                           strides=(1,), writeable=False)


def parse_block(block: bytes, offset: int = 0, max_samples: int = 0) -> dict[str, Any]:
    """Parse whole lines; returns songs, users, countries (indices) of the valid lines, in order,
    the number of lines and corrupt lines, and up to ``max_samples`` corrupt-line samples."""
    if kernels.enabled():
        return _parse_block_compiled(block, offset, max_samples)
    size = len(block)
    # The block in a buffer between _PAD bytes ending in a '\n' (so every line, the first one
    # included, follows a '\n', and every word read before a field is in the buffer) and 4 bytes
    # after it (so the 4 bytes after any '|' are); a last line without '\n' gets one.
    tail = 1 if size and block[-1] != 10 else 0
    buf = np.empty(_PAD + size + tail + 4, dtype=np.uint8)
    buf[:_PAD - 1] = 48
    buf[_PAD - 1] = 10
    buf[_PAD:_PAD + size] = np.frombuffer(block, dtype=np.uint8)
    buf[_PAD + size:] = 0
    if tail:
        buf[_PAD + size] = 10
    # Positions below are in ``scan``, which starts at that first '\n'.
    scan = buf[_PAD - 1:_PAD + size + tail]
    # Newlines and pipes in one scan, in order: a line's fields are the pipes between its newlines.
    marks = scan == 10
    marks |= scan == 124
    events = np.flatnonzero(marks)
    del marks
    newline_events = np.flatnonzero(scan[events] == 10)
    n = len(newline_events) - 1
    first = newline_events[:-1]  # the event index of each line's preceding '\n'
    cand = np.flatnonzero(newline_events[1:] - first == 3)  # exactly two pipes
    first = first[cand]
    p0, p1, p2 = events[first], events[1:][first], events[2:][first]
    len1, len2 = p1 - p0 - 1, p2 - p1 - 1
    # The 4 bytes after the second '|': the country, then '\n' or '\r\n' (the line's only '\n'
    # after p2 is its end, so this checks that the country has 2 bytes and one '\r' at most).
    after = _strided(buf, _PAD, len(scan), np.uint32)[p2]
    end = after >> np.uint32(16)
    ok = ((end & np.uint32(0xFF)) == _NEWLINE) | (end == _CR_NEWLINE)
    after &= np.uint32(0xFFFF)
    country = np.take(_COUNTRY_LE16, after)
    ok &= country >= 0
    # (len - 1) as unsigned is below 19 exactly when 1 <= len <= 19
    ok &= (len1 - 1).view(np.uint64) < MAX_DIGITS
    ok &= (len2 - 1).view(np.uint64) < MAX_DIGITS
    if not ok.all():  # the words of a rejected line's too long fields are read, not used
        np.minimum(len1, MAX_DIGITS, out=len1)
        np.minimum(len2, MAX_DIGITS, out=len2)
    ending = {(nbytes, back): _strided(buf, _PAD - 1 - back - nbytes, len(scan), w.dtype)
              for nbytes, w in _WORDS.items() for back in (0, 8, 16)}
    songs, ok_song = _parse_ids(ending, p1, len1)
    users, ok_user = _parse_ids(ending, p2, len2)
    ok &= ok_song
    ok &= ok_user
    valid = cand[ok]
    result: dict[str, Any] = {
        # narrow types: a map task holds millions of these until it spills
        "song": narrowest(songs[ok]), "user": narrowest(users[ok]),
        "country": country[ok].astype(np.uint8),
        "lines": n, "corrupt": n - len(valid), "samples": [],
    }
    if max_samples and result["corrupt"]:
        bad = np.ones(n, dtype=bool)
        bad[valid] = False
        for i in np.flatnonzero(bad)[:max_samples]:
            start = int(events[newline_events[i]])  # scan position q is block offset q - 1
            stop = int(events[newline_events[i + 1]]) - 1
            if stop > start and block[stop - 1] == 13:
                stop -= 1
            text = block[start:stop][: SAMPLE_CHARS].decode("utf-8", "backslashreplace")
            result["samples"].append({"offset": offset + start, "line": text})
    return result


def _parse_block_compiled(block: bytes, offset: int, max_samples: int) -> dict[str, Any]:
    data = np.frombuffer(block, dtype=np.uint8)
    most = len(block) // 6 + 1  # the shortest valid line, "1|1|FR\n", is 7 bytes
    songs, users = np.empty(most, np.uint64), np.empty(most, np.uint64)
    countries = np.empty(most, np.uint8)
    bad = np.empty((max(max_samples, 0), 2), np.int64)
    valid, lines, corrupt = _parse_lines(data, COUNTRY_INDEX, songs, users, countries, bad)
    samples = []
    for start, stop in bad[:min(corrupt, len(bad))].tolist():
        text = block[start:stop][:SAMPLE_CHARS].decode("utf-8", "backslashreplace")
        samples.append({"offset": offset + start, "line": text})
    return {"song": narrowest(songs[:valid]), "user": narrowest(users[:valid]),
            "country": countries[:valid].copy(), "lines": lines, "corrupt": corrupt,
            "samples": samples}


@kernels.kernel
def _parse_lines(data: np.ndarray, country_index: np.ndarray, songs: np.ndarray,
                 users: np.ndarray, countries: np.ndarray,
                 bad: np.ndarray) -> tuple[int, int, int]:
    """Each line checked against the rule of this module's docstring as it is scanned; the
    valid lines' fields written out, the first ``len(bad)`` corrupt lines' (start, stop)."""
    n = len(data)
    ten, zero, most = np.uint64(10), np.uint64(48), np.uint64(MAX_ID)
    valid = lines = corrupt = 0
    pos = 0
    while pos < n:
        end = pos
        while end < n and data[end] != 10:
            end += 1
        lines += 1
        stop = end - 1 if end > pos and data[end - 1] == 13 else end
        ok = False
        at = pos
        song = np.uint64(0)
        while at < stop and 48 <= data[at] <= 57:
            song = song * ten + (np.uint64(data[at]) - zero)  # wraps past 19 digits: rejected
            at += 1
        if 1 <= at - pos <= MAX_DIGITS and at < stop and data[at] == 124 and song <= most:
            at += 1
            first = at
            user = np.uint64(0)
            while at < stop and 48 <= data[at] <= 57:
                user = user * ten + (np.uint64(data[at]) - zero)
                at += 1
            if 1 <= at - first <= MAX_DIGITS and at < stop and data[at] == 124 and user <= most \
                    and stop - at == 3:
                code = country_index[np.int64(data[at + 1]) * 256 + np.int64(data[at + 2])]
                if code >= 0:
                    songs[valid] = song
                    users[valid] = user
                    countries[valid] = code
                    valid += 1
                    ok = True
        if not ok:
            if corrupt < len(bad):
                bad[corrupt, 0] = pos
                bad[corrupt, 1] = stop
            corrupt += 1
        pos = end + 1
    return valid, lines, corrupt
