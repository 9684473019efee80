"""The Lookout for Vision / SageMaker Ground Truth manifest (JSON lines), in and out.

One line per image::

    {"source-ref": "s3://bucket/img.png" | "/abs/path.png" | "relative/to/manifest.png",
     "anomaly-label": 1,                                   # 1 anomaly, 0 normal
     "anomaly-label-metadata": {"class-name": "anomaly", "human-annotated": "yes",
         "creation-date": "2026-11-26T19:00:00.000", "type": "groundtruth/image-classification",
         "job-name": "labeling-job/...", "confidence": 1},
     # segmentation datasets only:
     "anomaly-mask-ref": "masks/img.png",
     "anomaly-mask-ref-metadata": {"internal-color-map": {
         "0": {"class-name": "BACKGROUND", "hex-color": "#ffffff", "confidence": 0.0},
         "1": {"class-name": "scratch", "hex-color": "#ff0000", "confidence": 0.0}},
         "type": "groundtruth/semantic-segmentation", "human-annotated": "yes",
         "creation-date": "...", "job-name": "labeling-job/..."}}

Lookout for Vision kept train and test as two manifests; LineStation writes one and adds
``"linestation-split"`` to each line (other readers ignore unknown keys), and reads the
split back from it when present. Export writes the masks as Lookout-style colour masks
(white background, class colour for the defect) next to the manifest.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from station.datasets.store import (
    GOOD,
    LABEL_RE,
    SPLITS,
    Dataset,
    DatasetEntry,
    DatasetError,
    DatasetInfo,
    DatasetStore,
    decode_image,
    mask_to_bool,
)

SPLIT_KEY = "linestation-split"
CLASSIFICATION = "groundtruth/image-classification"
SEGMENTATION = "groundtruth/semantic-segmentation"
BACKGROUND_HEX = "#ffffff"
# Distinct class colours (tab10), as Ground Truth assigns them.
PALETTE = ("#ff0000", "#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def _hex_to_bgr(hex_color: str) -> tuple[int, int, int]:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return b, g, r


def _line(entry: DatasetEntry, image_ref: str, mask_ref: str | None, colour: str, job: str, created: str
          ) -> dict[str, Any]:
    anomalous = not entry.is_good
    out: dict[str, Any] = {
        "source-ref": image_ref,
        "anomaly-label": 1 if anomalous else 0,
        "anomaly-label-metadata": {
            "class-name": "anomaly" if anomalous else "normal",
            "confidence": 1,
            "creation-date": created,
            "human-annotated": "yes",
            "job-name": f"labeling-job/{job}",
            "type": CLASSIFICATION,
        },
        SPLIT_KEY: entry.split,
    }
    if anomalous and mask_ref is not None:
        out["anomaly-mask-ref"] = mask_ref
        out["anomaly-mask-ref-metadata"] = {
            "internal-color-map": {
                "0": {"class-name": "BACKGROUND", "hex-color": BACKGROUND_HEX, "confidence": 0.0},
                "1": {"class-name": entry.label, "hex-color": colour, "confidence": 0.0},
            },
            "type": SEGMENTATION,
            "human-annotated": "yes",
            "creation-date": created,
            "job-name": f"labeling-job/{job}-segmentation",
        }
    return out


def export_manifest(store: DatasetStore, dataset: Dataset, out: Path | str, *, prefix: str | None = None,
                    splits: tuple[str, ...] = SPLITS) -> int:
    """Write ``dataset`` as a manifest at ``out``; return the number of lines.

    ``source-ref`` is the absolute path of the stored image, or ``prefix`` + the blob path
    (e.g. ``s3://bucket/datasets/``) for a copy of the blobs uploaded elsewhere. Colour
    masks go to ``<out stem>_masks/`` beside the manifest. Written to a temporary file and
    renamed, so a failed export leaves no half manifest.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    mask_dir = out.parent / f"{out.stem}_masks"
    classes = sorted({e.label for e in dataset.entries if not e.is_good})
    colours = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(classes)}
    job = f"linestation-{dataset.info.name}-v{dataset.info.version}"
    created = _now()
    lines = []
    for e in dataset.entries:
        if e.split not in splits:
            continue
        ref = (prefix + e.path) if prefix else str(store.blob_path(e.path).resolve())
        mref = None
        if e.mask is not None:
            mask = store.read_mask(e)
            colour = np.full((*mask.shape, 3), 255, np.uint8)
            colour[mask] = _hex_to_bgr(colours[e.label])
            mask_dir.mkdir(exist_ok=True)
            mpath = mask_dir / f"{e.sha256}.png"
            if not cv2.imwrite(str(mpath), colour):
                raise DatasetError(f"{mpath}: cannot write mask")
            mref = str(mpath.resolve())
        lines.append(json.dumps(_line(e, ref, mref, colours.get(e.label, PALETTE[0]), job, created),
                                sort_keys=True))
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + ("\n" if lines else ""))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    return len(lines)


def _resolve_ref(ref: Any, base: Path, where: str) -> Path:
    if not isinstance(ref, str) or not ref:
        raise DatasetError(f"{where}: expected a non-empty string reference, got {ref!r}")
    if ref.startswith("s3://"):
        raise DatasetError(f"{where}: {ref} is in S3; download the images first (aws s3 sync) and "
                           f"rewrite source-ref to local paths, LineStation imports offline")
    path = Path(ref.removeprefix("file://"))
    return path if path.is_absolute() else base / path


def _class_of(obj: dict[str, Any], where: str) -> str:
    """The defect class: the one non-background class of the mask's colour map, else 'anomaly'."""
    cmap = (obj.get("anomaly-mask-ref-metadata") or {}).get("internal-color-map") or {}
    names = [v.get("class-name") for v in cmap.values() if isinstance(v, dict)]
    names = [n for n in names if n and n.upper() != "BACKGROUND"]
    label = names[0] if len(names) == 1 else "anomaly"
    if not LABEL_RE.match(label) or label == GOOD:
        raise DatasetError(f"{where}: unusable class name {label!r}")
    return label


def import_manifest(store: DatasetStore, name: str, manifest: Path | str, *, default_split: str = "train"
                    ) -> tuple[DatasetInfo, bool]:
    """Import a Lookout for Vision / Ground Truth manifest; returns (version, created).

    Lines without ``linestation-split`` go to ``default_split`` (Lookout kept train and test
    in separate manifests: import each with its split). Every line is checked and every
    image decoded before anything is stored; errors name the line.
    """
    if default_split not in SPLITS:
        raise DatasetError(f"split must be one of {SPLITS}, got {default_split!r}")
    manifest = Path(manifest)
    try:
        text = manifest.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{manifest}: cannot read: {e}") from e
    base = manifest.resolve().parent
    staged = []
    problems = []
    for i, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{manifest}:{i}"
        try:
            obj = json.loads(raw)
            if not isinstance(obj, dict):
                raise DatasetError(f"{where}: expected a JSON object")
            label_value = obj.get("anomaly-label")
            if label_value not in (0, 1, "0", "1"):
                raise DatasetError(f"{where}: anomaly-label must be 0 (normal) or 1 (anomaly), got {label_value!r}")
            anomalous = int(label_value) == 1
            split = obj.get(SPLIT_KEY, default_split)
            if split not in SPLITS:
                raise DatasetError(f"{where}: {SPLIT_KEY} must be one of {SPLITS}, got {split!r}")
            img_path = _resolve_ref(obj.get("source-ref"), base, f"{where}: source-ref")
            data = img_path.read_bytes()
            img = decode_image(data, f"{where}: {img_path}")
            mdata = None
            if anomalous and obj.get("anomaly-mask-ref"):
                mpath = _resolve_ref(obj["anomaly-mask-ref"], base, f"{where}: anomaly-mask-ref")
                mask = mask_to_bool(decode_image(mpath.read_bytes(), f"{where}: {mpath}"))
                if mask.shape != img.shape[:2]:
                    raise DatasetError(f"{where}: mask {mpath} is {mask.shape[::-1]}, image is {img.shape[1::-1]}")
                if mask.any():
                    ok, png = cv2.imencode(".png", mask.astype(np.uint8) * 255)
                    mdata = png.tobytes()
            label = _class_of(obj, where) if anomalous else GOOD
            staged.append((data, img_path.suffix, mdata, split, label, f"{manifest.name}:{i}"))
        except json.JSONDecodeError as e:
            problems.append(f"{where}: not JSON: {e.msg}")
        except OSError as e:
            problems.append(f"{where}: cannot read: {e}")
        except DatasetError as e:
            problems.append(str(e))
    if problems:
        raise DatasetError(f"{manifest}: {len(problems)} bad line(s), nothing imported:\n  " + "\n  ".join(problems))
    if not staged:
        raise DatasetError(f"{manifest}: no lines")
    entries = []
    for data, suffix, mdata, split, label, source in staged:
        rel, sha = store.put_blob(data, suffix)
        mrel = msha = None
        if mdata is not None:
            mrel, msha = store.put_blob(mdata, ".png")
        entries.append(DatasetEntry(rel, sha, split, label, mrel, msha, source=source))
    return store.create(name, entries, source=f"manifest:{manifest.resolve()}")
