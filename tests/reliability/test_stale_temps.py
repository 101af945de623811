"""Temporary files of a run that died are cleared by the next run, even when the dead run's pid
now belongs to another process (pids are reused: quickly in a container, and from 1 again after
a reboot); those of a live run are left alone."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

from mapreduce.fsutil import remove_stale_temps


def _temp(folder, name: str, mtime: float | None = None, folder_kind: bool = False):
    path = folder / name
    if folder_kind:
        path.mkdir()
        (path / "part").write_bytes(b"half")
    else:
        path.write_bytes(b"half")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path.name


def _wait_until_zombie(pid: int) -> None:
    deadline = time.time() + 30
    while psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.time() < deadline, "child did not exit"
        time.sleep(0.05)


def test_reused_pid_and_zombie_do_not_keep_a_dead_runs_temps(tmp_path):
    hour_ago = time.time() - 3600
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        _wait_until_zombie(zombie.pid)
        stale = [
            # written an hour ago by a dead run whose pid another process (started since) has
            _temp(tmp_path, f".country.txt.tmp-{other.pid}-a1", hour_ago),
            _temp(tmp_path, f".summary.json.tmp-{other.pid}-b2", hour_ago, folder_kind=True),
            # our own pid, but from before this process started: a previous life's leftover
            _temp(tmp_path, f".user.txt.tmp-{os.getpid()}-c3", hour_ago),
            # a process that has exited, not yet reaped by its parent
            _temp(tmp_path, f".store.json.tmp-{zombie.pid}-d4"),
        ]
        live = [
            _temp(tmp_path, f".country.txt.tmp-{other.pid}-e5"),  # written since it started
            _temp(tmp_path, f".user.txt.tmp-{os.getpid()}-f6"),
        ]
        removed = remove_stale_temps(str(tmp_path))
        assert sorted(removed) == sorted(stale)
        assert sorted(os.listdir(tmp_path)) == sorted(live)
    finally:
        other.kill()
        other.wait(timeout=30)
        zombie.wait(timeout=30)
