"""Content-addressed, crash-safe image files: ``<data_dir>/images/<hh>/<sha256>.png``.

Images are lossless PNG (uint16 stays uint16, BGR colour stays colour). The hash is over
the encoded file, so the name proves the bytes: a reader can always re-check a file.

Writing is the classic durable-rename dance, and it happens *before* the database commit
that references the file:

1. encode in memory, hash;
2. write to ``images/.tmp/<unique>.tmp``, ``fsync`` the file;
3. ``os.replace`` onto the final name (atomic), ``fsync`` the directory so the rename
   itself survives a power cut.

A crash leaves at worst a ``.tmp`` file or a finished image (or original) no row
references; all of them are removed by :meth:`StationStore.recover`.

Original files (an X-ray detector's TIFF or DICOM) are kept byte for byte beside the PNG,
under ``<data_dir>/originals/<hh>/<sha256>.<ext>`` (:meth:`ImageStore.put_original`), the
same durable way; the record names them under ``meta.original.stored``. The PNG stays the
image every reader uses (UI, datasets, sync); the original is the evidence.

Speed (1280x1024 Mono8, see ``bench/record.py``): PNG's row filters and deflate dominate.
The default (compression 0 = stored deflate blocks, filter NONE) encodes in ~1.1 ms but
the file is as large as the raw pixels (1.31 MB); :meth:`PngOptions.compact` (level 1,
Huffman-only, SUB filter) halves camera images (0.65 MB) for ~13 ms more per image.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from station.durable import fsync_dir
from station.store.errors import StoreDiskFull, StoreError

log = logging.getLogger(__name__)

IMAGES_DIRNAME = "images"
ORIGINALS_DIRNAME = "originals"
TMP_DIRNAME = ".tmp"
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@dataclass(frozen=True)
class PngOptions:
    """PNG encoder settings: a speed / size trade-off, always lossless."""

    compression: int = 0  # 0 (stored, fastest) .. 9
    filter: int = cv2.IMWRITE_PNG_FILTER_NONE
    strategy: int = cv2.IMWRITE_PNG_STRATEGY_DEFAULT

    @classmethod
    def fast(cls) -> PngOptions:
        return cls()

    @classmethod
    def compact(cls) -> PngOptions:
        """About half the size of :meth:`fast` on camera images, ~10 ms slower at 1.3 MP."""
        return cls(1, cv2.IMWRITE_PNG_FILTER_SUB, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY)

    def params(self) -> list[int]:
        return [
            cv2.IMWRITE_PNG_COMPRESSION, int(self.compression),
            cv2.IMWRITE_PNG_FILTER, int(self.filter),
            cv2.IMWRITE_PNG_STRATEGY, int(self.strategy),
        ]


@dataclass(frozen=True)
class StoredImage:
    """Where an image went and what it was."""

    sha256: str
    relpath: str  # posix path relative to the data dir: images/<hh>/<sha256>.png
    dtype: str
    shape: tuple[int, ...]
    bit_depth: int
    nbytes: int  # size of the file
    format: str = "png"
    # True when this call wrote the file (False: identical content was already stored).
    created: bool = field(default=False, compare=False)

    def to_json(self) -> dict:
        return {
            "path": self.relpath,
            "sha256": self.sha256,
            "format": self.format,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "bit_depth": self.bit_depth,
            "bytes": self.nbytes,
        }


# The two system calls that meet a full disk. Module-level so tests can make exactly the
# image layer fail (ENOSPC) without touching the database's own I/O.
def _write_fd(fd: int, data: memoryview) -> int:
    return os.write(fd, data)


def _fsync_fd(fd: int) -> None:
    os.fsync(fd)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_disk_full(exc: OSError) -> bool:
    return exc.errno in _DISK_FULL_ERRNOS


class ImageStore:
    """Writes and finds image files under ``<data_dir>/images``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        png: PngOptions | None = None,
        min_free_bytes: int = 64 << 20,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / IMAGES_DIRNAME
        self.tmp_dir = self.root / TMP_DIRNAME
        self.png = png or PngOptions()
        # Leave room for the database: an image that would eat the last megabytes is
        # refused up front, so the records of capture faults can still be committed.
        self.min_free_bytes = min_free_bytes
        self._known_dirs: set[str] = set()
        for d in (self.root, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        fsync_dir(self.data_dir)
        fsync_dir(self.root)

    # --- paths -----------------------------------------------------------------------
    def relpath_for(self, sha256: str) -> str:
        return f"{IMAGES_DIRNAME}/{sha256[:2]}/{sha256}.png"

    def path_of(self, relpath: str) -> Path:
        return self.data_dir / relpath

    def iter_files(self) -> Iterator[str]:
        """Every finished image file (not the tmp dir), as paths relative to the data dir."""
        for sub in sorted(os.scandir(self.root), key=lambda e: e.name):
            if not sub.is_dir() or sub.name == TMP_DIRNAME:
                continue
            for entry in os.scandir(sub.path):
                if entry.is_file():
                    yield f"{IMAGES_DIRNAME}/{sub.name}/{entry.name}"

    def iter_originals(self) -> Iterator[str]:
        """Every kept original file, as paths relative to the data dir (none yet: nothing)."""
        root = self.data_dir / ORIGINALS_DIRNAME
        if not root.is_dir():
            return
        for sub in sorted(os.scandir(root), key=lambda e: e.name):
            if not sub.is_dir():
                continue
            for entry in os.scandir(sub.path):
                if entry.is_file():
                    yield f"{ORIGINALS_DIRNAME}/{sub.name}/{entry.name}"

    def tmp_files(self) -> list[Path]:
        return sorted(p for p in self.tmp_dir.iterdir() if p.is_file())

    # --- writing ---------------------------------------------------------------------
    @staticmethod
    def encode(image: np.ndarray, png: PngOptions) -> memoryview:
        if not isinstance(image, np.ndarray) or image.dtype not in (np.uint8, np.uint16):
            raise StoreError(f"image must be a uint8 or uint16 array, got {getattr(image, 'dtype', type(image))}")
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise StoreError(f"image must be HxW or HxWx(1|3|4), got shape {image.shape}")
        if image.size == 0:
            raise StoreError("image is empty")
        ok, buf = cv2.imencode(".png", image, png.params())
        if not ok:
            raise StoreError(f"PNG encoder failed for {image.dtype} {image.shape}")
        return memoryview(buf).cast("B")  # no copy: hashed and written as it is

    def put(
        self, image: np.ndarray, *, bit_depth: int | None = None, png: PngOptions | None = None
    ) -> StoredImage:
        """Encode, write and fsync ``image``; return where it is. Raises StoreError."""
        data = self.encode(image, png or self.png)
        digest = hashlib.sha256(data).hexdigest()
        rel = self.relpath_for(digest)
        final = self.path_of(rel)
        stored = StoredImage(
            sha256=digest,
            relpath=rel,
            dtype=str(image.dtype),
            shape=tuple(int(s) for s in image.shape),
            bit_depth=int(bit_depth or image.dtype.itemsize * 8),
            nbytes=len(data),
        )
        if final.exists() and final.stat().st_size == len(data):
            return stored  # same content already durable (content addressing dedupes)
        self._check_free_space(len(data))
        self._write_durably(final, data)
        return replace(stored, created=True)

    def _check_free_space(self, nbytes: int) -> None:
        try:
            free = shutil.disk_usage(self.root).free
        except OSError:
            return
        if free - nbytes < self.min_free_bytes:
            raise StoreDiskFull(
                f"disk full: {free / 1e6:.1f} MB free in {self.root}, an image needs "
                f"{nbytes / 1e6:.1f} MB and {self.min_free_bytes / 1e6:.0f} MB stay reserved "
                f"for the database"
            )

    def _write_durably(self, final: Path, data: memoryview) -> None:
        tmp = self.tmp_dir / f"{final.stem[:16]}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                view = data
                while view:
                    view = view[_write_fd(fd, view):]
                _fsync_fd(fd)
            finally:
                os.close(fd)
            parent = final.parent
            new_dir = False
            if str(parent) not in self._known_dirs and not parent.is_dir():
                parent.mkdir(parents=True, exist_ok=True)
                new_dir = True
            os.replace(tmp, final)
            fsync_dir(parent)
            if new_dir:
                fsync_dir(parent.parent)  # the new <hh> directory's own entry
            self._known_dirs.add(str(parent))
        except OSError as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            if _is_disk_full(exc):
                raise StoreDiskFull(
                    f"disk full while writing image {final.name} to {self.root}: {exc.strerror}"
                ) from exc
            raise StoreError(f"cannot write image {final}: {exc}") from exc

    def put_original(self, data: bytes, ext: str, sha256: str | None = None) -> StoredImage:
        """Keep an original file's bytes as they are: ``originals/<hh>/<sha256>.<ext>``.

        ``sha256`` (when the caller hashed the bytes already) is checked, so a file that
        changed between reading and keeping is refused rather than stored under a wrong name.
        """
        if not ext.isalnum():
            raise StoreError(f"original file extension must be alphanumeric, got {ext!r}")
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and sha256 != digest:
            raise StoreError(f"original file changed: expected sha256 {sha256[:12]}, got {digest[:12]}")
        rel = f"{ORIGINALS_DIRNAME}/{digest[:2]}/{digest}.{ext.lower()}"
        final = self.path_of(rel)
        stored = StoredImage(sha256=digest, relpath=rel, dtype="bytes", shape=(len(data),), bit_depth=0,
                             nbytes=len(data), format=ext.lower())
        if final.exists() and final.stat().st_size == len(data):
            return stored
        self._check_free_space(len(data))
        self._write_durably(final, memoryview(data))
        return replace(stored, created=True)

    def remove(self, relpath: str) -> None:
        self.path_of(relpath).unlink(missing_ok=True)
