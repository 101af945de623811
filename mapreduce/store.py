"""The store: one complete-when-present result of a job's per-input step per input day,
reused by every window over those days, for any job.

    STORE/
      store.json             {"format": 4, "partitions": R}: every result uses the same R
      .lock                  one job at a time on a store (fcntl lock; holds the owner's pid)
      STEP/day-YYYYMMDD/     CHANNEL-PPPPP.tbl per channel and partition, manifest.json (last)

STEP is the per-input step's name, so jobs that share a step (the top 50 and the yearly top 10)
share its results, and jobs that do not never mix theirs. A result is fresh when its manifest
(:meth:`Store.day_state`, the one place that decides it) names the same source identity as
the input now has: size, modification time and a fingerprint of sampled content, and the
store's partition count. The manifest also keeps a hash of the whole input (``source.blake2b``,
of its bytes as stored: a compressed log's compressed bytes), taken while the day is reduced, so
that ``mapreduce status --verify`` can find an input edited in place behind the identity's back. Each table's size and crc32 are in the manifest; a reader verifies
them, so a truncated or altered table is found and computed again. The manifest carries a crc32
of its own content: an altered manifest is never believed, and its day is reduced again, as
when it is missing. A whole day is committed at once: its folder is renamed into place.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import logging
import os
import shutil
import stat
import threading
import zlib
from dataclasses import dataclass
from typing import Any, Iterator

import orjson

from mapreduce.compressed import plain_copy
from mapreduce.errors import JobError
from mapreduce.executors import Backend
from mapreduce.fsutil import atomic_write_bytes, commit_dir, make_temp_dir, remove_stale_temps
from mapreduce.job import JobSpec
from mapreduce.runner import run_job
from mapreduce.splits import DEFAULT_SPLIT_SIZE
from mapreduce.trace import Trace

log = logging.getLogger(__name__)

#: 4: results live under their step's name (a store of format 3 is reduced again, once)
STORE_FORMAT = 4
DEFAULT_PARTITIONS = 64
_SAMPLE = 64 * 1024


class LockBusy(Exception):
    """Another process holds the store's lock and the caller asked not to wait."""


@dataclass(frozen=True)
class DayState:
    """What the store holds for one input day: ``state`` is "cached" (fresh), "stale" (a result
    from another input or partition count: ``reason`` says which), "damaged" (``reason``) or
    "missing"; ``manifest`` is the verified manifest when there is one."""

    state: str
    reason: str | None
    manifest: dict[str, Any] | None


def full_hash(path: str) -> str:
    """blake2b-256 of every byte of ``path`` (the GIL is released while hashing, so a thread can
    do it beside a run)."""
    digest = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _not_regular(path: str, st: os.stat_result) -> OSError:
    kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a folder" if stat.S_ISDIR(st.st_mode)
            else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device")
    return OSError(errno.EINVAL, f"not a regular file ({kind})", path)


def source_identity(path: str) -> dict[str, Any]:
    """Size, mtime and a content fingerprint (head, middle and tail samples, blake2b).

    Only a regular file is opened: opening a FIFO named like a log blocks until a writer comes,
    for ever. O_NONBLOCK is the belt for a file swapped between the stat and the open (a regular
    file ignores it); the open file is checked again."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(path, st)
    digest = hashlib.blake2b(digest_size=16)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _not_regular(path, st)
    with open(fd, "rb") as f:
        for at in sorted({0, max(0, st.st_size // 2 - _SAMPLE // 2), max(0, st.st_size - _SAMPLE)}):
            f.seek(at)
            digest.update(f.read(_SAMPLE))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "fingerprint": digest.hexdigest()}


def step_identity(job: JobSpec) -> dict[str, Any]:
    """What a per-input step's result depends on besides its input: its parameters, and for a
    parameter naming a file (a side table such as a song-to-artist list), that file's identity
    too, so that a changed side file makes every cached day stale. Empty for a step without
    parameters, as in manifests written before this rule."""
    step: dict[str, Any] = {}
    for name, value in job.params:
        if isinstance(value, str) and os.path.isfile(value):
            step[name] = {"path": value, **source_identity(value)}
        else:
            step[name] = value
    return orjson.loads(orjson.dumps(step))  # as read back from a manifest (tuples as lists)


class Store:
    """The results of one per-input step (``step``, a folder name) in the store at ``root``."""

    def __init__(self, root: str, partitions: int = DEFAULT_PARTITIONS, *, step: str,
                 samples: bool = True) -> None:
        #: keep corrupt-line samples in manifests (False: counts only, nothing of a line's text)
        self.samples = samples
        if not step or step.startswith(".") or os.sep in step:
            raise ValueError(f"a store step name must be a plain folder name, got {step!r}")
        self.root = os.path.abspath(root)
        self.step = step
        os.makedirs(self.root, exist_ok=True)
        config_path = os.path.join(self.root, "store.json")
        try:
            config = _read_json(config_path)
        except ValueError as exc:
            log.warning("%s: %s; writing a new one", config_path, exc)
            config = None
        if (config and config.get("format") == STORE_FORMAT
                and isinstance(config.get("partitions"), int) and config["partitions"] >= 1):
            self.partitions = int(config["partitions"])
            if partitions != self.partitions and partitions != DEFAULT_PARTITIONS:
                log.warning("store %s keeps its %d partitions (asked for %d)", self.root,
                            self.partitions, partitions)
        else:
            self.partitions = partitions
            if config and isinstance(config.get("format"), int) and config["format"] < 4:
                _drop_format3_days(self.root)
            atomic_write_bytes(config_path, orjson.dumps(
                {"format": STORE_FORMAT, "partitions": partitions}))

    def day_dir(self, day: dt.date) -> str:
        return os.path.join(self.root, self.step, f"day-{day:%Y%m%d}")

    @staticmethod
    def is_fresh(manifest: dict[str, Any] | None, identity: dict[str, Any] | None,
                 partitions: int, step: dict[str, Any] | None = None) -> bool:
        """The freshness rule, for this store's runs and for the daemon's planning alike: a
        whole manifest, made with this partition count, from the input as it is now (and,
        given ``step``, by the step with these parameters: see :func:`step_identity`)."""
        return (manifest is not None and identity is not None
                and manifest.get("partitions") == partitions
                and manifest.get("source", {}).get("identity") == identity
                and (step is None or manifest.get("step_identity", {}) == step))

    def manifest(self, day: dt.date) -> dict[str, Any] | None:
        """The day's manifest if it is whole and of this store's format, else None."""
        return self._manifest(day)[0]

    def _manifest(self, day: dt.date) -> tuple[dict[str, Any] | None, str | None]:
        """``(manifest, None)``, or ``(None, what is wrong)`` for a day folder whose manifest is
        damaged, or ``(None, None)`` when there is simply nothing usable (no folder, an older
        format)."""
        folder = self.day_dir(day)
        try:
            manifest = _read_json(os.path.join(folder, "manifest.json"))
        except ValueError as exc:
            return None, f"its manifest is {exc}"
        if manifest is None:
            return None, "its manifest is missing" if os.path.isdir(folder) else None
        if manifest.get("format") != STORE_FORMAT:
            return None, None
        if manifest.get("checksum") != _manifest_checksum(manifest):
            return None, "its manifest does not match its checksum (altered on disk)"
        return manifest, None

    def day_state(self, day: dt.date, log_path: str | None,
                  identity: dict[str, Any] | None = None,
                  job: JobSpec | None = None) -> DayState:
        """The day's state against its input as it is now (``identity``, when the caller has it
        already) and, given ``job``, the per-input step's parameters and side files: the one
        place that says whether a stored day may be used."""
        manifest, damage = self._manifest(day)
        if damage:
            return DayState("damaged", damage, None)
        if manifest is None:
            return DayState("missing", None, None)
        if log_path is None:
            return DayState("stale", "its log is gone", manifest)
        if identity is None:
            identity = source_identity(log_path)
        step = None if job is None else step_identity(job)
        if self.is_fresh(manifest, identity, self.partitions, step):
            return DayState("cached", None, manifest)
        if step is not None and manifest.get("step_identity", {}) != step:
            why = "its step's parameters or side files changed"
        elif manifest.get("partitions") != self.partitions:
            why = f"made with {manifest.get('partitions')} partitions, the store has {self.partitions}"
        else:
            was = manifest.get("source", {}).get("identity") or {}
            changed = [k for k in ("size", "mtime_ns", "fingerprint") if was.get(k) != identity.get(k)]
            why = "its log changed (" + ", ".join(changed or ["identity"]) + ")"
        return DayState("stale", why, manifest)

    def fresh_manifest(self, day: dt.date, log_path: str,
                       job: JobSpec | None = None) -> dict[str, Any] | None:
        """The day's manifest if it is whole and was made from the log as it is now (and, given
        ``job``, by that per-input step with the same parameters and side files)."""
        state = self.day_state(day, log_path, job=job)
        if state.state == "damaged":
            log.warning("store day %s has no usable manifest: %s; reducing it again from its log",
                        f"{day:%Y-%m-%d}", state.reason)
        return state.manifest if state.state == "cached" else None

    def stored_days(self) -> list[dt.date]:
        """The days that have a folder in this step, oldest first."""
        days = []
        try:
            names = os.listdir(os.path.join(self.root, self.step))
        except FileNotFoundError:
            return []
        for name in names:
            if name.startswith("day-") and len(name) == 12:
                try:
                    days.append(dt.datetime.strptime(name[4:], "%Y%m%d").date())
                except ValueError:
                    pass
        return sorted(days)

    def tables(self, day: dt.date, manifest: dict[str, Any],
               channel: str) -> dict[int, tuple[tuple[Any, ...], int]]:
        """Partition -> (what to read, rows) of a day's tables of one channel, from its verified
        manifest (a second reading could find it gone and silently drop the day). What to read
        is (path, crc32), or for a keyed day (path, crc32, block table's path, its crc32)."""
        folder = self.day_dir(day)
        keys = manifest.get("keyed", {}).get("folder")
        keys_folder = os.path.join(self.root, self.step, keys) if keys else None
        return {int(p): (((os.path.join(folder, name), meta["crc32"]) if keys_folder is None
                          else (os.path.join(folder, name), meta["crc32"],
                                os.path.join(keys_folder, name), meta["keys_crc32"])),
                         meta["rows"])
                for name, meta in manifest.get("files", {}).items()
                if name.startswith(channel + "-") for p in [name[len(channel) + 1:-4]]}

    @staticmethod
    def checksum(manifest: dict[str, Any]) -> int:
        """The checksum a day's manifest carries of the rest of its content."""
        return _manifest_checksum(manifest)

    def discard(self, day: dt.date) -> None:
        shutil.rmtree(self.day_dir(day), ignore_errors=True)

    def reduce(self, job: JobSpec, day: dt.date, log_path: str, backend: Backend, *,
               split_size: int = DEFAULT_SPLIT_SIZE, quiet: bool = True,
               trace: Trace | None = None) -> dict[str, Any]:
        """Run the per-input step ``job`` over one input and commit its result; returns its
        manifest."""
        before = source_identity(log_path)
        step = step_identity(job)  # before reading: a side file changed meanwhile is seen next run
        folder = os.path.dirname(self.day_dir(day))
        os.makedirs(folder, exist_ok=True)
        staging = make_temp_dir(folder, f"day-{day:%Y%m%d}")
        os.rmdir(staging)  # run_job puts its output folder here
        hashed: dict[str, Any] = {}
        hasher = threading.Thread(target=_hash_into, args=(log_path, hashed), daemon=True,
                                  name="store-hash")
        hasher.start()  # beside the run: the whole-input hash costs no wall time of its own
        try:
            # a compressed log is decompressed once into a scratch file beside the store's days
            # and split like a plain one (mapreduce.compressed says why)
            with plain_copy(log_path, folder) as readable:
                result = run_job(job, [readable], staging, backend, reducers=self.partitions,
                                 split_size=split_size, quiet=quiet, trace=trace,
                                 report_path=staging + ".report.json")
            hasher.join()
            if source_identity(log_path) != before:
                raise JobError(f"{log_path} changed while it was being read; run again once "
                               "its writer has finished")
            files = {f"{r.channel}-{r.partition:05d}.tbl": {"bytes": r.bytes, "crc32": r.crc32,
                                                            "rows": r.records}
                     for r in result.reduce_results if r.path}
            report = result.report
            manifest = {
                "format": STORE_FORMAT, "date": f"{day:%Y-%m-%d}", "partitions": self.partitions,
                "step": self.step, "job": report["job"], "params": report["params"],
                **({"step_identity": step} if step else {}),
                "source": {"path": os.path.abspath(log_path), "identity": before,
                           "blake2b": hashed.get("hash")},
                "lines": report["lines"], "counters": report["counters"],
                "corrupt_lines": report["counters"].get("corrupt_lines", 0),
                "corrupt_samples": report.get("samples", []) if self.samples else [],
                "files": files, "stage_seconds": report["stage_seconds"],
                "peak_rss_bytes": report["peak_rss_bytes"],
            }
            manifest["checksum"] = _manifest_checksum(manifest)
            commit_dir(staging, orjson.dumps(manifest, option=orjson.OPT_INDENT_2),
                       self.day_dir(day))
            return manifest
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staging + ".report.json")

    @contextlib.contextmanager
    def locked(self, wait: bool = True) -> Iterator[None]:
        """Hold the store's lock: one job at a time writes a store and its outputs."""
        fd = self._open_lock(os.path.join(self.root, ".lock"))
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise LockBusy(f"another job (pid {holder}) is running on store {self.root}; "
                               "try again later or run without --no-wait") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            remove_stale_temps(self.root)  # only dead runs' leftovers: we hold the lock
            remove_stale_temps(os.path.join(self.root, self.step))
            yield
        finally:
            os.close(fd)  # closing drops the lock; a killed process's lock goes with it

    @staticmethod
    def _open_lock(path: str) -> int:
        """The lock file, opened only if it is one a run made: never through a symlink (one
        planted in a shared store would have us truncate any file we can write), never a
        hard link, FIFO or other file, whose content we would truncate."""
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
            return fd  # ours, new
        except FileExistsError:
            pass
        refuse = f"store lock {path} is not a lock file a run made"
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise JobError(f"{refuse}: it is a symbolic link; not following it (remove it "
                               "if the store is yours)") from None
            if exc.errno == errno.EISDIR:
                raise JobError(f"{refuse}: it is a folder") from None
            raise
        st = os.fstat(fd)
        why = ("it is not a regular file" if not stat.S_ISREG(st.st_mode)
               else f"it has {st.st_nlink} hard links" if st.st_nlink != 1
               else None)
        if why is None:  # a run writes nothing but its pid there
            content = os.pread(fd, 33, 0)
            if len(content) > 32 or not (content.strip().isdigit() or not content.strip()):
                why = "it holds something other than a pid"
        if why:
            os.close(fd)
            raise JobError(f"{refuse}: {why}; not touching it (remove it if the store is "
                           "yours)")
        return fd


def _hash_into(path: str, out: dict[str, Any]) -> None:
    try:
        out["hash"] = full_hash(path)
    except OSError as exc:  # the run itself reports an unreadable log; the hash is then unknown
        log.debug("cannot hash %s: %s", path, exc)


def _drop_format3_days(root: str) -> None:
    """A format-3 store kept the top-50's days at its top level; they are never read again."""
    old = [n for n in os.listdir(root) if n.startswith("day-")]
    if old:
        log.info("store %s: upgrading to format %d; its %d day(s) of format 3 are computed "
                 "again when needed", root, STORE_FORMAT, len(old))
    for name in old:
        shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _manifest_checksum(manifest: dict[str, Any]) -> int:
    """crc32 of the manifest's content without its checksum, in one canonical serialisation (a
    parsed manifest serialises back to the same bytes: orjson writes floats shortest-exact)."""
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return zlib.crc32(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))


def _read_json(path: str) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when there is no file. ValueError saying why when the
    file holds something else: invalid JSON, or valid JSON of another type (a garbled ``[]``),
    which is no better, since callers only ever ``.get`` from it."""
    try:
        with open(path, "rb") as f:
            value = orjson.loads(f.read())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except orjson.JSONDecodeError:
        raise ValueError("not valid JSON") from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value
