"""Durable small-file writes: the one place that knows how to make a write survive a crash.

Used by every store that publishes immutable versions with "write to a temp dir, fsync the
files, rename, fsync the parent" (models, calibration profiles, datasets, images).
"""
from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (a rename or a new file in it) to disk."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms without directory fds (Windows)
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` and fsync it; optionally set its permission bits."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if mode is not None:
        os.chmod(path, mode)


def publish_dir(final: Path, files: Iterable[tuple[str, bytes]],
                is_valid: Callable[[Path], bool] | None = None) -> Path:
    """Write ``files`` (name, bytes) into a temp directory beside ``final``, fsync them and
    rename the directory into place (replacing an older ``final``). If ``files`` raises
    (a download that fails its hash check) nothing is left behind.

    Several processes may fill the same cache at once, so the rename comes first and an
    existing ``final`` is only then looked at: when ``is_valid(final)`` (the caller's own
    verification) holds, it is another process's good copy and is kept - never deleted
    under a reader that already verified it; otherwise (an older or broken copy) it is
    moved aside and the rename tried again."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        for name, data in files:
            write_synced(tmp / name, data)
        fsync_dir(tmp)
        for _ in range(3):
            try:
                os.rename(tmp, final)
                break
            except OSError as exc:  # ENOTEMPTY / EEXIST: a non-empty final is there
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            if is_valid is not None and is_valid(final):
                return final  # someone else's verified copy: theirs stays, ours is dropped
            _remove_dir(final)
        else:
            raise OSError(errno.EEXIST, f"{final} kept being re-created while it was replaced")
        fsync_dir(final.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _remove_dir(path: Path) -> None:
    """Move ``path`` aside (atomic; gone already is fine), then delete it: a concurrent
    remover never trips over half-deleted files."""
    trash = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.old"
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def try_lock_file(path: Path, holder: str | None = None) -> int | None:
    """Take an exclusive, process-lifetime lock on ``path`` (created if missing) and write
    ``holder`` (default: our pid) into it, for whoever finds it locked to name us; return
    the open fd (closing it releases the lock), or None when another process holds it.
    Used for "one writer / one service per data dir" and "one process per batch shard"."""
    import fcntl  # POSIX only; the station runs on Linux

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{holder if holder is not None else os.getpid()}\n".encode())
    return fd
