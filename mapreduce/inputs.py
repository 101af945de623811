"""Inputs named by their day: ``listen-20240107.log`` is the input of 2024-01-07.

A windowed job declares its inputs' name pattern once (``DatedInputs("listen-{date}.log")``);
the run, the daemon and ``status`` all find and name inputs through it, and check the folders a
run will use through :func:`check_folders`, so that every folder problem is a usage error found
before any work.

An input may be compressed (``listen-20240107.log.gz``, ``.log.zst``: the suffixes in
``compressions``); a day given twice (plain and compressed) is refused, naming both. So is, by
default, an input that resolves outside its folder (a symbolic link): a daemon with more rights
than whoever writes the logs folder would otherwise read, and copy into its store, any file
it can read.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import re
from dataclasses import dataclass, field

from mapreduce.compressed import SUFFIXES
from mapreduce.errors import JobError, UsageError
from mapreduce.fsutil import TEMP_MARK, ensure_writable_folder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatedInputs:
    """A name pattern with one ``{date}`` field, written YYYYMMDD, optionally followed by one of
    ``compressions`` (``()``: plain files only)."""

    pattern: str
    compressions: tuple[str, ...] = SUFFIXES

    def __post_init__(self) -> None:
        if self.pattern.count("{date}") != 1:
            raise ValueError(f"a dated input pattern needs one {{date}}, got {self.pattern!r}")

    @property
    def _regex(self) -> re.Pattern[str]:
        before, _, after = self.pattern.partition("{date}")
        return re.compile(re.escape(before) + r"(\d{8})" + re.escape(after))

    def date_of(self, name: str) -> dt.date | None:
        """The date of a name that fits the pattern with a real calendar date, else None."""
        for suffix in self.compressions:
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        m = self._regex.fullmatch(name)
        if not m:
            return None
        try:
            return dt.datetime.strptime(m.group(1), "%Y%m%d").date()
        except ValueError:
            return None

    def name_of(self, day: dt.date) -> str:
        return self.pattern.replace("{date}", f"{day:%Y%m%d}")

    def describe(self) -> str:
        return self.pattern.replace("{date}", "YYYYMMDD")

    def scan(self, folder: str) -> tuple[dict[dt.date, str], list[str]]:
        """Inputs by day, and the other names in the folder (for the caller to report); a
        JobError naming the first refused input (see :meth:`survey`)."""
        found = self.survey(folder)
        if found.refused:
            raise JobError(next(iter(found.refused.values())))
        return found.found, found.others

    def survey(self, folder: str, allow_links: bool = False) -> "InputScan":
        """Inputs by day; the other names; and the days refused, each with a one-line reason:
        given twice (plain and compressed), or a link resolving outside ``folder`` (unless
        ``allow_links``)."""
        scan = InputScan()
        by_day: dict[dt.date, list[str]] = {}
        for name in sorted(os.listdir(folder)):
            day = self.date_of(name)
            if day is None:
                scan.others.append(name)
            else:
                by_day.setdefault(day, []).append(os.path.join(folder, name))
        real_folder = os.path.realpath(folder)
        for day, paths in by_day.items():
            if len(paths) > 1:
                scan.refused[day] = (f"{day:%Y-%m-%d} is given twice: {' and '.join(paths)}; "
                                     "keep one of them")
                continue
            path = paths[0]
            if not allow_links and os.path.dirname(os.path.realpath(path)) != real_folder:
                scan.refused[day] = (f"{path} resolves to {os.path.realpath(path)}, outside the "
                                     "logs folder; refusing to read it (--allow-links allows it)")
                continue
            scan.found[day] = path
        return scan

    def ignored_message(self, path: str) -> str:
        """What is said of a name that is not an input (one wording, so a once-filter merges
        the run's and the daemon's)."""
        also = f" (or {' or '.join(self.compressions)})" if self.compressions else ""
        return f"ignoring {path}: not a {self.describe()}{also} name with a real date"


@dataclass
class InputScan:
    found: dict[dt.date, str] = field(default_factory=dict)
    others: list[str] = field(default_factory=list)
    refused: dict[dt.date, str] = field(default_factory=dict)


def inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies under it, links resolved."""
    real, base = os.path.realpath(path), os.path.realpath(folder)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def delivery_in_progress(name: str) -> bool:
    """An input on its way, not a stray: ``NAME.tmp``, written then renamed into place as the
    docs advise, or this project's own ``.NAME.tmp-PID-...`` temporaries."""
    return name.endswith(".tmp") or (name.startswith(".") and TEMP_MARK in name)


def parse_date(text: str, option: str = "--date") -> dt.date:
    for fmt in ("%Y%m%d", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            pass
    raise UsageError(f"{option} {text!r} is not a real date as YYYYMMDD or YYYY-MM-DD")


def window_days(end: dt.date, days: int) -> list[dt.date]:
    """The ``days`` calendar days ending on ``end``, oldest first; a UsageError for a window
    that would begin before the year 1 (was a traceback: --days 99999999, --date 00010103)."""
    try:
        return [end - dt.timedelta(days=i) for i in range(days - 1, -1, -1)]
    except OverflowError:
        raise UsageError(f"a window of {days} days ending {end.isoformat()} would begin "
                         "before the year 1") from None


def check_folders(inputs: str, out: str, store: str | None = None) -> None:
    """Every folder problem is a usage error found before any work; ``store`` too, which
    otherwise failed later as an OSError (exit 1), or, given the inputs folder, filled it with
    store files that every later run warned about."""
    if not os.path.isdir(inputs):
        raise UsageError(f"logs folder {inputs} does not exist or is not a folder")
    # inside the logs folder is as bad: every later scan warns about the folder, and a log
    # shipper writing the logs folder could reach into the outputs
    for option, folder, why in (("--out", out, "outputs would be mixed with the logs"),
                                ("--store", store, "its files would be mixed with the logs")):
        if folder is None or not inside(folder, inputs):
            continue
        where = ("the logs folder" if os.path.realpath(folder) == os.path.realpath(inputs)
                 else f"inside the logs folder {inputs}")
        raise UsageError(f"{option} must not be {where}: {why}")
    ensure_writable_folder(out, "output")
    if store is not None:
        ensure_writable_folder(store, "store")
