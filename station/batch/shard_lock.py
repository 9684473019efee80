"""One process per (run, shard): an exclusive ``flock`` held for the whole run.

Two processes on the same run and shard would both append rows to the same files (and
the second one's ``--resume`` would cut the first one's half-written line as "torn").
The lock file sits in the run's summary folder of the output root (the staging folder
for an S3 output, so it guards this machine); the holder writes its pid and host into it,
so the second process can say who holds it. The kernel drops the lock when the holder
exits, however it exits, so a crash never leaves a stale lock; the file itself stays.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

from station.batch.layout import run_dir_key, shard_lock_name
from station.durable import try_lock_file


class ShardLocked(RuntimeError):
    """Another process runs this shard of this run; the message names it."""


class ShardLock:
    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    @classmethod
    def acquire(cls, root: Path, run_id: str, shard: int) -> ShardLock:
        path = Path(root) / run_dir_key(run_id) / shard_lock_name(shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = try_lock_file(path, holder=f"pid {os.getpid()} on {socket.gethostname()}")
        if fd is None:
            try:
                holder = path.read_text(encoding="utf-8", errors="replace")[:200].strip()
            except OSError:
                holder = ""
            raise ShardLocked(f"run {run_id} shard {shard} is being run by {holder or 'another process'} "
                              f"(lock {path}); wait for it to finish, or stop it, then --resume")
        return cls(path, fd)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1

    def __enter__(self) -> ShardLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
