"""Import a folder in the common anomaly-detection layout (MVTec AD style)::

    DIR/train/good/*.png
    DIR/test/good/*.png
    DIR/test/<defect>/*.png
    DIR/ground_truth/<defect>/<name>_mask.png      (or <name>.png)
    DIR/validation/good|<defect>/*.png             (optional; else carved from test/)

Every file is decoded before anything is stored, so a folder with an unreadable image
fails with the list of bad files and leaves no partial version behind. Without a
``validation/`` folder, a fixed share of each test class is moved to the validation split,
chosen by content hash (the same folder always gives the same split, so re-importing an
unchanged folder yields the same manifest and no new version).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from station.datasets.store import (
    GOOD,
    LABEL_RE,
    DatasetEntry,
    DatasetError,
    DatasetInfo,
    DatasetStore,
    decode_image,
    mask_to_bool,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class _Item:
    file: Path
    split: str
    label: str
    mask: Path | None


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _mask_for(root: Path, label: str, image: Path) -> Path | None:
    gt = root / "ground_truth" / label
    for name in (f"{image.stem}_mask.png", f"{image.stem}.png", f"{image.stem}_mask{image.suffix}"):
        if (gt / name).is_file():
            return gt / name
    return None


def _scan(root: Path) -> list[_Item]:
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    train_good = root / "train" / GOOD
    if not train_good.is_dir() or not _images(train_good):
        raise DatasetError(f"{root}: expected good training images in {train_good} "
                           f"(layout: train/good, test/good, test/<defect>, ground_truth/<defect>)")
    items = [_Item(p, "train", GOOD, None) for p in _images(train_good)]
    extra = sorted(p.name for p in (root / "train").iterdir() if p.is_dir() and p.name != GOOD)
    if extra:
        raise DatasetError(f"{root / 'train'}: only train/good is allowed (found {extra}); "
                           f"defect images belong in test/<defect>")
    for split in ("validation", "test"):
        d = root / split
        if not d.is_dir():
            continue
        for cls in sorted(p for p in d.iterdir() if p.is_dir()):
            if not LABEL_RE.match(cls.name):
                raise DatasetError(f"{cls}: class folder names must be letters, digits, _ . -")
            for img in _images(cls):
                mask = None if cls.name == GOOD else _mask_for(root, cls.name, img)
                items.append(_Item(img, split, cls.name, mask))
    return items


def _carve_validation(entries: list[DatasetEntry], fraction: float) -> list[DatasetEntry]:
    """Move ``fraction`` of each test class (lowest hashes first) to validation."""
    if fraction <= 0:
        return entries
    by_label: dict[str, list[int]] = {}
    for i, e in enumerate(entries):
        if e.split == "test":
            by_label.setdefault(e.label, []).append(i)
    out = list(entries)
    for idx in by_label.values():
        idx.sort(key=lambda i: entries[i].sha256)
        take = int(round(len(idx) * fraction))
        if len(idx) >= 2:
            take = min(max(take, 1), len(idx) - 1)  # keep both splits populated
        else:
            take = 0
        for i in idx[:take]:
            e = entries[i]
            out[i] = DatasetEntry(e.path, e.sha256, "validation", e.label, e.mask, e.mask_sha256, e.source)
    return out


def import_anomaly_folder(store: DatasetStore, name: str, folder: Path | str, *,
                          validation_fraction: float = 0.3) -> tuple[DatasetInfo, bool]:
    """Import ``folder``; returns (the version, whether it is new)."""
    if not 0 <= validation_fraction < 1:
        raise DatasetError(f"validation fraction must be within [0, 1), got {validation_fraction}")
    root = Path(folder).expanduser().resolve()
    items = _scan(root)
    # Decode everything first: a bad file fails the import before a single blob is written.
    blobs: list[tuple[bytes, bytes | None]] = []
    problems = []
    for it in items:
        try:
            data = it.file.read_bytes()
            img = decode_image(data, str(it.file))
            mdata = None
            if it.mask is not None:
                mdata = it.mask.read_bytes()
                mask = decode_image(mdata, str(it.mask))
                if mask.shape[:2] != img.shape[:2]:
                    raise DatasetError(f"{it.mask}: mask is {mask.shape[1]}x{mask.shape[0]}, image "
                                       f"{it.file.name} is {img.shape[1]}x{img.shape[0]}")
                if not mask_to_bool(mask).any():
                    mdata = None  # an all-background mask says nothing about where the defect is
            blobs.append((data, mdata))
        except (OSError, DatasetError) as e:
            problems.append(str(e))
    if problems:
        raise DatasetError(f"{root}: {len(problems)} bad file(s), nothing imported:\n  " + "\n  ".join(problems))
    entries = []
    for it, (data, mdata) in zip(items, blobs):
        rel, sha = store.put_blob(data, it.file.suffix)
        mrel = msha = None
        if mdata is not None:
            mrel, msha = store.put_blob(mdata, ".png")
        entries.append(DatasetEntry(rel, sha, it.split, it.label, mrel, msha,
                                    source=it.file.relative_to(root).as_posix()))
    if not any(e.split == "validation" for e in entries):
        entries = _carve_validation(entries, validation_fraction)
    return store.create(name, entries, source=f"folder:{root}",
                        meta={"validation_fraction": validation_fraction})
