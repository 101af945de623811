"""The watch daemon's own log: one line per event and per run, as text or JSON lines.

    log.info(msg, extra={"fields": {...}}) ──▶ root logger ──▶ stderr
                                                          └──▶ --log-file (rotating)

Text lines read as usual (``time LEVEL logger: message``); a JSON line carries the same message
plus the record's ``fields`` (event, date, seconds, lines_read, ...) for machines to filter on.
"""
from __future__ import annotations

import datetime as dt
import logging
import logging.handlers
import sys
from typing import Any

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FILE_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 5


def fields(**kw: Any) -> dict[str, Any]:
    """``extra=`` for a log call: the event's fields, one JSON key each in the JSON format."""
    return {"fields": kw}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class OnceFilter(logging.Filter):
    """Lets each distinct message starting with ``prefix`` through once: the job's own folder
    scan warns about every foreign name on every run, and a daemon runs many times."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(self.prefix):
            return True
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


def setup_logging(fmt: str, log_file: str | None, level: int = logging.INFO) -> None:
    """Replace the CLI's default handler with stderr (+ a rotating file) in the chosen format."""
    formatter: logging.Formatter = (JsonFormatter() if fmt == "json"
                                    else logging.Formatter(TEXT_FORMAT))
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.handlers.RotatingFileHandler(
            log_file, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)
    once = OnceFilter("ignoring ")
    for name in ("mapreduce.windowed", "jobs.watch"):  # both report foreign names with one wording
        logging.getLogger(name).addFilter(once)
