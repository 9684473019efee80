"""A watched folder as a trigger source: completion detection, claim, ledger, quarantine.

Detector software (X-ray) and other stations drop one image per file into a folder. The
station must read every file exactly once, only when it is complete, and lose none, also
across its own restarts. SDK-free: decoding is the driver's business.

The protocol, all renames within one filesystem (atomic):

- ``<folder>/``: the inbox. A file is *complete* when its name is final (temporary names:
  ``*.part``, ``*.tmp``, ``.name``, ``~name`` ... are never touched, so writers that write
  to a temporary name and rename it in are taken as soon as it appears) and its size,
  mtime and inode have not changed for ``settle_s`` (for writers that write in place).
- ``<folder>/.linestation/processing/``: a complete file is *claimed* by renaming it here
  and read once. If it changed while being read (a writer that paused longer than
  ``settle_s``), it goes back to the inbox and is taken again when it has settled.
- ``<folder>/done/`` (or deleted, ``after="delete"``): after the inspection of the file
  is committed to the station's database (:meth:`FolderWatcher.finish`, called by the
  driver's inspection listener). The station keeps the original bytes in its own store.
- ``<folder>/quarantine/<file>`` and ``<file>.reason.json``: a file that cannot be used
  (empty, truncated, corrupt, not an image, wrong size), with the reason.
- ``<folder>/.linestation/ledger.jsonl``: one line per claim, finish, quarantine and
  duplicate (an identical file, by sha256, that was already inspected is moved to
  ``done/`` as a duplicate instead of being inspected again).

Durability: the station database is the truth about what was inspected, so filing a file
away and the ledger are not fsynced (a power cut may leave a recorded file in
``processing/``; the restart then asks the database and files it away). Only quarantine
is made durable, as the reason file is the one record a bad file gets besides its fault.

Restart: files still in ``processing/`` were claimed by a run that stopped before their
record was committed, or after it but before ``finish``. ``recorded(sha256)`` (the
station database) tells which: recorded ones are finished, the others inspected first.
Files that landed while the station was down are simply in the inbox.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from station.durable import fsync_dir, write_synced

log = logging.getLogger(__name__)

STATE_DIRNAME = ".linestation"
PROCESSING_DIRNAME = "processing"
QUARANTINE_DIRNAME = "quarantine"
DONE_DIRNAME = "done"
LEDGER_FILENAME = "ledger.jsonl"
TEMP_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload", ".filepart", ".swp", "~")
NAME_MAX = 255  # bytes in one file name (ext4, xfs, btrfs, NTFS via ntfs-3g)
LEDGER_MEMORY = 100_000  # sha256s of inspected files remembered for duplicate detection

Recorded = Callable[[str], bool]


class WatchedFolderError(OSError):
    """The folder cannot be used (missing, not writable, on another filesystem)."""


@dataclass(frozen=True)
class Claim:
    """One complete file, taken from the inbox and read; it sits at ``path`` until finished."""

    name: str  # the name it landed with
    path: Path  # its place in processing/
    data: bytes
    sha256: str
    landed_ns: int  # its mtime when it settled
    resumed: bool = False  # claimed by an earlier run that stopped before recording it


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class FolderWatcher:
    """Finds complete files in ``folder``, claims them one at a time, and files them away."""

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        settle_s: float = 0.5,
        poll_interval_s: float = 0.05,
        after: str = "move",
        ignore: Iterable[str] = (),
        recorded: Recorded | None = None,
    ) -> None:
        if after not in ("move", "delete"):
            raise ValueError(f"after must be 'move' or 'delete', got {after!r}")
        self.folder = Path(folder)
        self.state_dir = self.folder / STATE_DIRNAME
        self.processing = self.state_dir / PROCESSING_DIRNAME
        self.quarantine_dir = self.folder / QUARANTINE_DIRNAME
        self.done_dir = self.folder / DONE_DIRNAME
        self.ledger_path = self.state_dir / LEDGER_FILENAME
        self.settle_s, self.poll_interval_s = float(settle_s), float(poll_interval_s)
        self.after = after
        self.ignore = tuple(ignore)
        self.recorded = recorded
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[tuple, float]] = {}  # name -> (signature, first seen)
        self._resume: list[Path] = []  # claimed by an earlier run, not recorded: inspect first
        self._inspected: OrderedDict[str, str] = OrderedDict()  # sha256 -> name (bounded)
        self._opened = False

    # --- lifecycle -------------------------------------------------------------------
    def open(self) -> None:
        """Create the state folders, load the ledger and sort out an earlier run's claims."""
        if not self.folder.is_dir():
            raise WatchedFolderError(f"watched folder {self.folder} does not exist or is not a folder")
        try:
            for d in (self.state_dir, self.processing, self.quarantine_dir, self.done_dir):
                d.mkdir(exist_ok=True)
        except OSError as exc:
            raise WatchedFolderError(f"cannot create the station's folders in {self.folder}: {exc}") from exc
        if not os.access(self.folder, os.W_OK):
            raise WatchedFolderError(f"watched folder {self.folder} is not writable: the station moves "
                                     f"files it has taken out of the inbox")
        self._load_ledger()
        self._resume = self._reconcile()
        self._opened = True

    def _load_ledger(self) -> None:
        self._inspected.clear()
        if not self.ledger_path.exists():
            return
        with open(self.ledger_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash: the entry never happened
                if entry.get("event") == "finished":
                    self._remember(entry["sha256"], entry.get("name", ""))

    def _remember(self, sha256: str, name: str) -> None:
        self._inspected[sha256] = name
        self._inspected.move_to_end(sha256)
        while len(self._inspected) > LEDGER_MEMORY:
            self._inspected.popitem(last=False)

    def _reconcile(self) -> list[Path]:
        """Claims left by an earlier run: finish the recorded ones, return the rest."""
        again = []
        for path in sorted(self.processing.iterdir(), key=lambda p: _natural_key(p.name)):
            if not path.is_file():
                continue
            sha = _sha256_file(path)
            if sha in self._inspected or (self.recorded is not None and self.recorded(sha)):
                log.info("%s was recorded before the restart; filing it away", path.name)
                self._file_away(path, path.name, sha)
            else:
                again.append(path)
        if again:
            log.warning("%d file(s) claimed before a restart but never recorded: inspecting them first",
                        len(again))
        return again

    # --- finding and claiming ----------------------------------------------------------
    def next_claim(self, timeout_s: float, stop: threading.Event | None = None,
                   held: Callable[[], bool] | None = None) -> Claim | None:
        """The next complete file, claimed and read; None when none settled within the timeout
        (or ``stop`` was set, or ``held()`` became true: nothing is claimed while the station is
        held, the file stays in the inbox for after the resume)."""
        if not self._opened:
            raise WatchedFolderError("the watched folder is not open")
        deadline = time.monotonic() + timeout_s
        while True:
            if held is not None and held():
                return None
            claim = self._resumed() or self._poll_once()
            if claim is not None:
                return claim
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if stop is not None:
                if stop.wait(min(self.poll_interval_s, remaining)):
                    return None
            else:
                time.sleep(min(self.poll_interval_s, remaining))

    def _resumed(self) -> Claim | None:
        while self._resume:
            path = self._resume.pop(0)
            try:
                data = path.read_bytes()
                st = path.stat()
            except FileNotFoundError:
                continue
            return Claim(path.name, path, data, hashlib.sha256(data).hexdigest(), st.st_mtime_ns, resumed=True)
        return None

    def _wanted(self, name: str) -> bool:
        if name.startswith((".", "~")) or name.lower().endswith(TEMP_SUFFIXES):
            return False
        return not any(fnmatch.fnmatch(name, pat) for pat in self.ignore)

    def _scan(self) -> dict[str, tuple]:
        out = {}
        try:
            entries = list(os.scandir(self.folder))
        except OSError as exc:
            raise WatchedFolderError(f"cannot list {self.folder}: {exc}") from exc
        for e in entries:
            if not self._wanted(e.name):
                continue
            try:
                if not e.is_file(follow_symlinks=False):
                    continue
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished between listing and stat
            out[e.name] = (st.st_size, st.st_mtime_ns, st.st_ino)
        return out

    def _poll_once(self) -> Claim | None:
        """One look at the inbox: note new or changed files, claim the oldest settled one."""
        now = time.monotonic()
        sigs = self._scan()
        with self._lock:
            for gone in set(self._pending) - set(sigs):
                del self._pending[gone]
            settled = []
            for name, sig in sigs.items():
                seen = self._pending.get(name)
                if seen is None or seen[0] != sig:
                    self._pending[name] = (sig, now)
                elif now - seen[1] >= self.settle_s:
                    settled.append(name)
            for name in sorted(settled, key=lambda n: (sigs[n][1], _natural_key(n))):
                claim = self._claim(name, sigs[name])
                if claim is not None:
                    return claim
        return None

    def _claim(self, name: str, sig: tuple) -> Claim | None:
        src, dst = self.folder / name, self.processing / name
        if dst.exists():  # the same name is still being processed: take it after that one
            return None
        try:
            os.rename(src, dst)
        except FileNotFoundError:
            self._pending.pop(name, None)
            return None  # taken away by someone else: not ours
        except OSError as exc:  # EACCES, EBUSY (a writer holding it): leave it, try again later
            self._pending[name] = (sig, time.monotonic())
            log.warning("%s cannot be taken from the inbox (%s); trying again", name, exc)
            return None
        self._pending.pop(name, None)
        try:
            data = dst.read_bytes()
            st = dst.stat()
        except OSError as exc:
            self._put_back(dst, name)
            log.warning("%s could not be read (%s); left in the inbox", name, exc)
            return None
        if (st.st_size, st.st_mtime_ns) != sig[:2] or len(data) != st.st_size:
            # still being written (the writer paused longer than settle_s): not complete yet
            self._put_back(dst, name)
            return None
        sha = hashlib.sha256(data).hexdigest()
        if sha in self._inspected:
            first = self._inspected[sha]
            self._ledger("duplicate", name, sha, first=first)
            self._file_away(dst, name, sha, duplicate=True)
            log.warning("%s is identical to %s, which was already inspected: not inspected again", name, first)
            return None
        self._ledger("claimed", name, sha, bytes=len(data))
        return Claim(name, dst, data, sha, st.st_mtime_ns)

    def _put_back(self, path: Path, name: str) -> None:
        try:
            os.rename(path, self.folder / name)
        except OSError as exc:  # pragma: no cover - same filesystem, we just moved it here
            log.error("cannot return %s to the inbox: %s", name, exc)

    # --- filing away ------------------------------------------------------------------
    def finish(self, claim_path: str | os.PathLike, sha256: str, name: str | None = None) -> None:
        """The file's inspection is committed: move it out of processing/ (done/ or deleted)."""
        path = Path(claim_path)
        name = name or path.name
        with self._lock:
            self._remember(sha256, name)
            self._ledger("finished", name, sha256)
            if path.exists():
                self._file_away(path, name, sha256)

    def quarantine(self, claim: Claim, reason: str, **detail: object) -> Path:
        """Move an unusable file to quarantine/ with ``<file>.reason.json`` next to it."""
        with self._lock:
            target = _free_name(self.quarantine_dir, _quarantine_name(claim.name, claim.sha256))
            doc = {"file": claim.name, "quarantined_as": target.name, "reason": reason, "sha256": claim.sha256,
                   "bytes": len(claim.data), "at": _utc(), **detail}
            write_synced(target.with_name(target.name + ".reason.json"),
                         (json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n").encode())
            os.rename(claim.path, target)
            fsync_dir(self.quarantine_dir)
            self._ledger("quarantined", claim.name, claim.sha256, reason=reason, finished=True)
            return target

    def _file_away(self, path: Path, name: str, sha256: str, duplicate: bool = False) -> None:
        if self.after == "delete" and not duplicate:
            path.unlink(missing_ok=True)
        else:
            os.rename(path, _free_name(self.done_dir, name + (".duplicate" if duplicate else "")))

    def _ledger(self, event: str, name: str, sha256: str, **extra: object) -> None:
        line = json.dumps({"at": _utc(), "event": event, "name": name, "sha256": sha256, **extra},
                          sort_keys=True, default=str) + "\n"
        fd = os.open(self.ledger_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, line.encode())  # one write per line: appends do not interleave
        finally:
            os.close(fd)

    # --- facts -------------------------------------------------------------------------
    def quarantined(self) -> list[dict]:
        """The reasons of every file in quarantine/ (oldest first)."""
        out = []
        for p in sorted(self.quarantine_dir.glob("*.reason.json"), key=lambda p: p.stat().st_mtime_ns):
            out.append(json.loads(p.read_text(encoding="utf-8")))
        return out

    def in_processing(self) -> list[str]:
        return sorted(p.name for p in self.processing.iterdir() if p.is_file())


def _quarantine_name(name: str, sha256: str) -> str:
    """``name``, or a shortened one (with part of its sha256) when ``name.N.reason.json``
    would exceed NAME_MAX: a bad file with a long name must still reach quarantine/."""
    if len(name.encode()) + len(".999.reason.json") <= NAME_MAX:
        return name
    ext = name.rsplit(".", 1)[-1][:16] if "." in name else "bin"
    keep = NAME_MAX - len(".999.reason.json") - len(f"~{sha256[:12]}.{ext}")
    stem = name.encode()[:keep].decode(errors="ignore")
    return f"{stem}~{sha256[:12]}.{ext}"


def _free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``name.1``, ``name.2`` ... when taken (a re-used file name)."""
    target = folder / name
    n = 0
    while target.exists() or target.with_name(target.name + ".reason.json").exists():
        n += 1
        target = folder / f"{name}.{n}"
    return target


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
