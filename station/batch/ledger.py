"""The resume ledger is the results themselves: rows appended durably, torn tails repaired.

Only the parent process writes. Each row is one ``os.write`` of one complete JSON line to
the shard's file of its partition (``O_APPEND``); files are fsynced every ``sync_every_s``
and on close, so a crash of the process loses nothing that was written, and a power cut
at most the last fraction of a second. On ``--resume`` the shard's files are read back:
a last line without its newline (a write cut short by SIGKILL or power loss) is cut off -
that image is simply inspected again - and every complete row marks its image done.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from station.batch.layout import RESULTS_DIR, parse_results_key, results_key
from station.durable import fsync_dir

log = logging.getLogger(__name__)


class LedgerError(RuntimeError):
    """A results file is damaged somewhere other than its last line: refuse to guess."""


@dataclass
class Repair:
    path: Path
    dropped_bytes: int


def shard_files(root: Path, run_id: str, shard: int) -> list[Path]:
    """This shard's results files under ``root`` (every partition)."""
    base = root / RESULTS_DIR
    if not base.is_dir():
        return []
    out = []
    for p in base.glob(f"date=*/station=*/recipe=*/{run_id}-{shard}.jsonl"):
        key = parse_results_key(p.relative_to(root).as_posix())
        if key is not None and key.run_id == run_id and key.shard == shard:
            out.append(p)
    return sorted(out)


def repair_tail(path: Path) -> Repair | None:
    """Cut a torn last line off ``path`` (durably); None when the file ends cleanly."""
    size = path.stat().st_size
    if size == 0:
        return None
    with open(path, "rb+") as f:
        f.seek(max(0, size - 1))
        if f.read(1) == b"\n":
            return None
        # scan back to the last newline (rows are a few kB; read in blocks)
        pos, keep = size, 0
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            block = f.read(step)
            nl = block.rfind(b"\n")
            if nl >= 0:
                keep = pos + nl + 1
                break
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return Repair(path, size - keep)


def read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise LedgerError(f"{path}:{n}: damaged row ({exc}); move the file away or "
                                  f"start a new run") from None
    return rows


def load_done(root: Path, run_id: str, shard: int) -> tuple[dict[str, dict[str, Any]], list[Repair]]:
    """Rows already written by this shard (by image id) and the torn tails that were cut."""
    done: dict[str, dict[str, Any]] = {}
    repairs = []
    for path in shard_files(root, run_id, shard):
        fixed = repair_tail(path)
        if fixed is not None:
            log.warning("%s: cut a torn last line (%d bytes); that image is inspected again",
                        path, fixed.dropped_bytes)
            repairs.append(fixed)
        for row in read_rows(path):
            done[row["image_id"]] = row
    return done, repairs


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def to_json_line(row: dict[str, Any]) -> str:
    """Strict JSON (Athena's SerDe rejects NaN): a non-finite score is written as null."""
    try:
        return json.dumps(row, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(row), separators=(",", ":"), allow_nan=False)


@dataclass
class ResultWriter:
    """Appends rows to the shard's files, one file per (date, station, recipe) partition."""

    root: Path
    run_id: str
    shard: int
    date: str
    sync_every_s: float = 0.5
    _fds: dict[str, int] = field(default_factory=dict)
    _dirty: set[str] = field(default_factory=set)
    _last_sync: float = field(default_factory=time.monotonic)
    written: int = 0

    def key_for(self, row: dict[str, Any]) -> str:
        return results_key(self.run_id, self.shard, date=self.date, station=row.get("station"),
                           recipe=row.get("recipe"))

    def _fd(self, key: str) -> int:
        fd = self._fds.get(key)
        if fd is None:
            path = self.root / key
            new_dir = not path.parent.is_dir()
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = self._fds[key] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            fsync_dir(path.parent)
            if new_dir:
                for parent in list(path.parents)[1:5]:
                    fsync_dir(parent)
        return fd

    def write(self, row: dict[str, Any]) -> str:
        """Append one row (one write call, one complete line); returns its key."""
        key = self.key_for(row)
        line = (to_json_line(row) + "\n").encode()
        fd = self._fd(key)
        view = memoryview(line)
        while view:  # a regular file takes it in one call; loop for the pathological case
            view = view[os.write(fd, view):]
        self._dirty.add(key)
        self.written += 1
        if time.monotonic() - self._last_sync >= self.sync_every_s:
            self.sync()
        return key

    def sync(self) -> None:
        for key in list(self._dirty):
            os.fsync(self._fds[key])
        self._dirty.clear()
        self._last_sync = time.monotonic()

    def close(self) -> None:
        self.sync()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
