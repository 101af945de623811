"""Compressed inputs: ``.gz`` (gzip, any number of members) and ``.zst`` (zstandard, any number
of frames), read through a decompressor.

How a compressed day is parallelised: it is decompressed once, by the run that reduces it, into a
scratch file in the store's step folder, and that file is cut into byte-range splits like a plain
log. Why not the alternatives:

* gzip has no entry point but its start, so a byte range of the *uncompressed* text can only be
  reached by inflating everything before it: N tasks would each inflate up to the whole file (N
  times the work), and the uncompressed size that splits are planned from is not in the file
  (gzip's trailer keeps it modulo 4 GiB, per member);
* one task per file would leave every worker but one idle on the daemon's usual run, one new day;
* zstd frames could be split apart, but a file made by ``zstd`` has one frame, so that only helps
  files written in many frames on purpose.

Decompressing costs one sequential pass (zlib inflates a few hundred MB/s, zstd over 1 GB/s,
both faster than a worker parses), and the scratch file's disk space while the day is reduced,
which the free-space check counts. The split readers then see the very bytes of the plain log:
same lines, same offsets in corrupt samples, same tables. The scratch name carries the run's pid,
so a killed run's scratch is cleared by the store's stale-temporary cleanup.
"""
from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import struct
from typing import BinaryIO, Iterator

from mapreduce.errors import JobError
from mapreduce.fsutil import make_temp_dir

#: the suffixes a dated input may carry after its name, and what reads them
SUFFIXES: tuple[str, ...] = (".gz", ".zst")
_CHUNK = 4 << 20
#: the expansion assumed when a file does not say its uncompressed size (listen logs: 4-8x)
ASSUMED_RATIO = 10


def suffix_of(path: str) -> str | None:
    """The compression suffix of ``path``, or None for a plain file."""
    for suffix in SUFFIXES:
        if path.endswith(suffix):
            return suffix
    return None


def open_decompressed(path: str) -> BinaryIO:
    """A binary stream of ``path``'s uncompressed bytes (every gzip member, every zstd frame)."""
    suffix = suffix_of(path)
    if suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if suffix == ".zst":
        zstandard = _zstandard()
        raw = open(path, "rb")
        # read_across_frames: a file of several frames (zstd -B, pzstd) is one text
        return zstandard.ZstdDecompressor().stream_reader(  # type: ignore[no-any-return]
            raw, read_across_frames=True, closefd=True)
    return open(path, "rb")


def _zstandard():  # type: ignore[no-untyped-def]
    try:
        import zstandard
    except ImportError:
        raise JobError("reading .zst logs needs the zstandard package: pip install zstandard") \
            from None
    return zstandard


@contextlib.contextmanager
def plain_copy(path: str, folder: str) -> Iterator[str]:
    """``path`` itself when plain; else its uncompressed bytes in a scratch file in ``folder``,
    removed on exit. A damaged file is a JobError naming it."""
    if suffix_of(path) is None:
        yield path
        return
    # the plain name inside a scratch folder: a job that reads its input's name (the day) sees
    # the same name as for the plain log
    base = os.path.basename(path)
    scratch_dir = make_temp_dir(folder, base)
    scratch = os.path.join(scratch_dir, base[: -len(suffix_of(path) or "")])
    try:
        with open(scratch, "xb") as out:
            try:
                with open_decompressed(path) as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
            except (EOFError, gzip.BadGzipFile, ValueError) as exc:
                raise JobError(f"cannot decompress {path}: {exc}") from None
            except Exception as exc:
                if type(exc).__name__ == "ZstdError":
                    raise JobError(f"cannot decompress {path}: {exc}") from None
                raise
        yield scratch
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)


def uncompressed_size(path: str) -> int:
    """The uncompressed size of ``path`` when the file says it (a single gzip member under
    4 GiB, a zstd frame that records it), else an estimate (``ASSUMED_RATIO`` times its size):
    for the free-space check, never for reading."""
    size = os.path.getsize(path)
    suffix = suffix_of(path)
    if suffix is None:
        return size
    try:
        with open(path, "rb") as f:
            if suffix == ".gz" and size >= 18:
                f.seek(-4, os.SEEK_END)
                isize = struct.unpack("<I", f.read(4))[0]
                if isize >= size:  # else it wrapped at 4 GiB or there are several members
                    return isize
            elif suffix == ".zst":
                content = _zstandard().frame_content_size(f.read(18))
                if content > 0:
                    return int(content)
    except (OSError, ValueError, JobError):
        pass
    except Exception as exc:  # noqa: BLE001 - a ZstdError: a damaged header, estimated
        if type(exc).__name__ != "ZstdError":
            raise
    return size * ASSUMED_RATIO
