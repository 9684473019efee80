"""Immutable, versioned datasets under ``<data_dir>/datasets``.

Layout::

    datasets/
      blobs/ab/ab12...ef.png            image and mask files, named by the sha256 of their bytes
      <name>/v1/manifest.jsonl          one JSON object per image (see DatasetEntry)
      <name>/v1/dataset.json            counts, created_at, source, sha256 of manifest.jsonl

A version is written into a temporary directory, its files fsynced and made read-only,
then renamed into place in one step: a reader sees the whole version or none of it, and a
version never changes afterwards. Creating a dataset whose manifest is byte-identical to
the latest version returns that version instead of a new one (re-importing an unchanged
folder does not bump the version). Every image and mask is stored under its content hash,
so the manifest's hashes pin exactly what a model was trained on; :meth:`DatasetStore.read_image`
re-checks the hash on every read.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
from station.durable import fsync_dir, write_synced

try:  # POSIX; elsewhere concurrent creators are not serialised
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

SPLITS = ("train", "validation", "test")
GOOD = "good"
MANIFEST = "manifest.jsonl"
INFO = "dataset.json"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_REF_RE = re.compile(r"^(?P<name>[^@]+)(?:@v?(?P<version>\d+))?$")


class DatasetError(ValueError):
    """A dataset cannot be read, written or imported as asked; nothing was changed."""


@dataclass(frozen=True)
class DatasetEntry:
    """One image of a dataset version (one line of ``manifest.jsonl``)."""

    path: str  # blob path relative to the datasets root
    sha256: str  # of the image file's bytes
    split: str  # train / validation / test
    label: str  # "good" or the defect class
    mask: str | None = None  # blob path of a 0/255 (or colour) mask, None without one
    mask_sha256: str | None = None
    source: str = ""  # where it came from: original file, inspection id, manifest line

    @property
    def is_good(self) -> bool:
        return self.label == GOOD

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "split": self.split, "label": self.label,
                "mask": self.mask, "mask_sha256": self.mask_sha256, "source": self.source}

    @classmethod
    def from_json(cls, data: Any, where: str = "") -> DatasetEntry:
        if not isinstance(data, dict):
            raise DatasetError(f"{where}: expected a JSON object, got {type(data).__name__}")
        try:
            entry = cls(path=str(data["path"]), sha256=str(data["sha256"]), split=str(data["split"]),
                        label=str(data["label"]), mask=data.get("mask"), mask_sha256=data.get("mask_sha256"),
                        source=str(data.get("source", "")))
        except KeyError as e:
            raise DatasetError(f"{where}: missing key {e.args[0]!r}") from None
        entry.validate(where)
        return entry

    def validate(self, where: str = "") -> None:
        if self.split not in SPLITS:
            raise DatasetError(f"{where}: split must be one of {SPLITS}, got {self.split!r}")
        if not LABEL_RE.match(self.label):
            raise DatasetError(f"{where}: label {self.label!r} must be 'good' or a defect class name "
                               f"(letters, digits, _ . -)")
        if (self.mask is None) != (self.mask_sha256 is None):
            raise DatasetError(f"{where}: mask and mask_sha256 go together")
        if self.is_good and self.mask is not None:
            raise DatasetError(f"{where}: a good image carries no defect mask")


@dataclass(frozen=True)
class DatasetInfo:
    """What ``dataset.json`` says about one version."""

    name: str
    version: int
    created_at: str
    source: str
    manifest_sha256: str
    counts: dict[str, Any]
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "ref": self.ref, "created_at": self.created_at,
                "source": self.source, "manifest_sha256": self.manifest_sha256, "counts": self.counts,
                **({"meta": self.meta} if self.meta else {})}


@dataclass(frozen=True)
class Dataset:
    info: DatasetInfo
    entries: tuple[DatasetEntry, ...]

    def split(self, name: str) -> list[DatasetEntry]:
        return [e for e in self.entries if e.split == name]


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``"name"`` -> (name, None); ``"name@3"`` or ``"name@v3"`` -> (name, 3)."""
    m = _REF_RE.match(ref.strip())
    if not m or not NAME_RE.match(m.group("name")):
        raise DatasetError(f"bad dataset reference {ref!r}: expected NAME or NAME@VERSION "
                           f"(name: letters, digits, _ . -)")
    v = m.group("version")
    return m.group("name"), (int(v) if v is not None else None)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()




def manifest_bytes(entries: list[DatasetEntry]) -> bytes:
    """Canonical manifest text: one sorted-key compact JSON object per line, in a stable order."""
    ordered = sorted(entries, key=lambda e: (SPLITS.index(e.split), e.label, e.sha256, e.source))
    return b"".join(json.dumps(e.to_json(), sort_keys=True, separators=(",", ":")).encode() + b"\n"
                    for e in ordered)


def counts_of(entries: list[DatasetEntry] | tuple[DatasetEntry, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"images": len(entries), "masks": sum(e.mask is not None for e in entries)}
    for s in SPLITS:
        per: dict[str, int] = {}
        for e in entries:
            if e.split == s:
                per[e.label] = per.get(e.label, 0) + 1
        out[s] = dict(sorted(per.items()))
    return out


class DatasetStore:
    """Dataset versions and their content-addressed blobs under ``root``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs"

    # --------------------------------------------------------------- blobs
    def put_blob(self, data: bytes, suffix: str) -> tuple[str, str]:
        """Store file bytes under their hash; return (relative path, sha256)."""
        sha = sha256_bytes(data)
        suffix = suffix.lower() if re.match(r"^\.[A-Za-z0-9]{1,5}$", suffix or "") else ".bin"
        rel = f"blobs/{sha[:2]}/{sha}{suffix}"
        final = self.root / rel
        if final.exists():
            return rel, sha
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{uuid.uuid4().hex[:8]}"
        try:
            _write_readonly(tmp, data)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(final.parent)
        return rel, sha

    def blob_path(self, rel: str) -> Path:
        if not rel.startswith("blobs/") or ".." in Path(rel).parts:
            raise DatasetError(f"blob path {rel!r} is outside {self.blobs}")
        return self.root / rel

    def read_blob(self, rel: str, sha256: str) -> bytes:
        path = self.blob_path(rel)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DatasetError(f"{path}: cannot read: {e}") from e
        got = sha256_bytes(data)
        if got != sha256:
            raise DatasetError(f"{path}: content hash mismatch (manifest {sha256}, file {got})")
        return data

    def read_image(self, entry: DatasetEntry) -> np.ndarray:
        """The image as stored (uint8 / uint16, grey or BGR), hash-checked."""
        return decode_image(self.read_blob(entry.path, entry.sha256), str(self.blob_path(entry.path)))

    def read_mask(self, entry: DatasetEntry) -> np.ndarray | None:
        """The defect mask as bool HxW (any non-background pixel), or None."""
        if entry.mask is None:
            return None
        mask = decode_image(self.read_blob(entry.mask, entry.mask_sha256 or ""), entry.mask)
        return mask_to_bool(mask)

    # --------------------------------------------------------------- versions
    def versions(self, name: str) -> list[int]:
        d = self.root / name
        if not NAME_RE.match(name) or not d.is_dir():
            return []
        return sorted(int(p.name[1:]) for p in d.iterdir() if p.is_dir() and re.match(r"^v\d+$", p.name))

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and p.name != "blobs" and NAME_RE.match(p.name) and self.versions(p.name))

    def info(self, name: str, version: int | None = None) -> DatasetInfo:
        versions = self.versions(name)
        if not versions:
            known = ", ".join(self.names()) or "none"
            raise DatasetError(f"no dataset {name!r} in {self.root} (known: {known})")
        v = versions[-1] if version is None else int(version)
        if v not in versions:
            raise DatasetError(f"dataset {name!r} has no version {v} (versions: {versions})")
        path = self.root / name / f"v{v}"
        try:
            meta = json.loads((path / INFO).read_text(encoding="utf-8"))
            return DatasetInfo(name=name, version=v, created_at=meta["created_at"], source=meta["source"],
                               manifest_sha256=meta["manifest_sha256"], counts=meta["counts"], path=path,
                               meta=meta.get("meta") or {})
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DatasetError(f"{path / INFO}: unreadable dataset info: {e!r}") from e

    def list(self) -> list[DatasetInfo]:
        return [self.info(n, v) for n in self.names() for v in self.versions(n)]

    def resolve(self, ref: str) -> DatasetInfo:
        name, version = parse_ref(ref)
        return self.info(name, version)

    def load(self, ref: str) -> Dataset:
        """A dataset version with every manifest line parsed; the manifest hash is checked."""
        info = self.resolve(ref)
        path = info.path / MANIFEST
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DatasetError(f"{path}: cannot read: {e}") from e
        if sha256_bytes(data) != info.manifest_sha256:
            raise DatasetError(f"{path}: content hash mismatch with {INFO}; the version was altered")
        entries = []
        for i, line in enumerate(data.decode("utf-8").splitlines(), 1):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{path}:{i}: not JSON: {e}") from e
            entries.append(DatasetEntry.from_json(obj, f"{path}:{i}"))
        return Dataset(info, tuple(entries))

    def create(self, name: str, entries: list[DatasetEntry], *, source: str,
               meta: dict[str, Any] | None = None) -> tuple[DatasetInfo, bool]:
        """Write a new version of ``name`` unless the latest one has the same manifest.

        Returns (info, created). Raises DatasetError for a bad name, no images, or entries
        whose blobs are missing.
        """
        if not NAME_RE.match(name or ""):
            raise DatasetError(f"bad dataset name {name!r}: letters, digits, _ . - (max 64)")
        if not entries:
            raise DatasetError(f"dataset {name!r}: no images to store")
        for e in entries:
            e.validate(e.source or e.path)
            for rel in (e.path, e.mask):
                if rel is not None and not self.blob_path(rel).is_file():
                    raise DatasetError(f"dataset {name!r}: blob {rel} is missing")
        payload = manifest_bytes(entries)
        digest = sha256_bytes(payload)
        d = self.root / name
        d.mkdir(parents=True, exist_ok=True)
        with self._lock():
            versions = self.versions(name)
            if versions:
                latest = self.info(name, versions[-1])
                if latest.manifest_sha256 == digest:
                    return latest, False
            version = (versions[-1] if versions else 0) + 1
            info = {
                "name": name, "version": version, "source": source, "manifest_sha256": digest,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "counts": counts_of(entries), "meta": dict(meta or {}),
            }
            tmp = d / f".tmp-v{version}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            try:
                _write_readonly(tmp / MANIFEST, payload)
                _write_readonly(tmp / INFO, json.dumps(info, indent=2, sort_keys=True).encode())
                fsync_dir(tmp)
                os.chmod(tmp, 0o555)
                os.rename(tmp, d / f"v{version}")
            except BaseException:
                os.chmod(tmp, 0o755)
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            fsync_dir(d)
        return self.info(name, version), True

    @contextmanager
    def _lock(self) -> Iterator[None]:
        if fcntl is None:  # pragma: no cover
            yield
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def decode_image(data: bytes, where: str) -> np.ndarray:
    """PNG / JPEG / TIFF / BMP bytes -> array (16-bit stays 16-bit); DatasetError if unreadable."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if img is None:
        raise DatasetError(f"{where}: not a readable image")
    if img.dtype not in (np.uint8, np.uint16):
        raise DatasetError(f"{where}: unsupported pixel type {img.dtype} (8- or 16-bit images only)")
    return img


def mask_to_bool(mask: np.ndarray) -> np.ndarray:
    """Any pixel that is not background (black, or white in colour LfV masks) is defect."""
    if mask.ndim == 3:
        rgb = mask[:, :, :3]
        white = np.iinfo(mask.dtype).max
        return ~(np.all(rgb == 0, axis=2) | np.all(rgb == white, axis=2))
    return mask > 0


def _write_readonly(path: Path, data: bytes) -> None:
    """Dataset files never change once written: fsync them and drop the write bits."""
    write_synced(path, data, mode=0o444)
