"""One process per (run, shard): an exclusive ``flock`` held for the whole run.

Two processes on the same run and shard would both append rows to the same files (and
the second one's ``--resume`` would cut the first one's half-written line as "torn").
The lock file sits in the run's summary folder of the output root (the staging folder
for an S3 output, so it guards this machine); the holder writes its pid and host into it,
so the second process can say who holds it. The kernel drops the lock when the holder
exits, however it exits, so a crash never leaves a stale lock; the file itself stays.
"""
from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from station.batch.layout import run_dir_key, shard_lock_name


class ShardLocked(RuntimeError):
    """Another process runs this shard of this run; the message names it."""


class ShardLock:
    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    @classmethod
    def acquire(cls, root: Path, run_id: str, shard: int) -> ShardLock:
        path = Path(root) / run_dir_key(run_id) / shard_lock_name(shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise ShardLocked(f"run {run_id} shard {shard} is being run by {holder} (lock {path}); "
                              f"wait for it to finish, or stop it, then --resume") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1

    def __enter__(self) -> ShardLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
