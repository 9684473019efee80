"""The supervisor's review queue, as plain queries (no Qt: the review tab runs these on its
task runner and tests call them directly).

The queue holds the inspections a person must look at - ``review`` and ``reject``
decisions, optionally ``check_capture`` - that carry no review label yet, OLDEST first:
the part that has waited longest is the one most likely to still be held at the line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sqlalchemy import exists, func, select

from station.store.jsonutil import parse_iso_utc
from station.store.schema import Inspection, Label
from station.store.station_store import StationStore

QUEUE_DECISIONS = ("review", "reject")
QUEUE_LIMIT = 500


@dataclass(frozen=True)
class ReviewItem:
    """One line of the queue."""

    inspection_id: str
    part_id: str
    lot: str
    recipe: str
    decision: str
    started_at: datetime
    score: float | None
    confidence: float | None


@dataclass
class ReviewDetail:
    """Everything the review tab shows for the selected item."""

    item: ReviewItem
    document: dict[str, Any]
    image: np.ndarray | None  # as stored (uint8/uint16, mono or BGR); None for a capture fault
    heatmap: np.ndarray | None  # uint8, smaller than the image (the UI scales it on)
    threshold: float | None
    spec_checks: list[dict[str, Any]] = field(default_factory=list)
    image_error: str = ""  # why the image could not be shown (file missing, unreadable)
    pictures: dict[bool, np.ndarray] = field(default_factory=dict)  # RGB to show, by "with heatmap"

    @property
    def reason(self) -> str:
        return str(self.document.get("reason") or "")


def _decisions(include_check_capture: bool) -> tuple[str, ...]:
    return QUEUE_DECISIONS + (("check_capture",) if include_check_capture else ())


def _unlabelled(decisions: tuple[str, ...]):
    reviewed = exists().where(Label.inspection_id == Inspection.id, Label.source == "review")
    return (Inspection.decision.in_(decisions)) & ~reviewed


def review_queue(store: StationStore, *, include_check_capture: bool = False,
                 limit: int = QUEUE_LIMIT) -> list[ReviewItem]:
    """Unlabelled review/reject (and optionally check-capture) inspections, oldest first."""
    q = (select(Inspection.id, Inspection.part_id, Inspection.lot, Inspection.recipe, Inspection.decision,
                Inspection.started_at, Inspection.score, Inspection.confidence)
         .where(_unlabelled(_decisions(include_check_capture)))
         .order_by(Inspection.started_at, Inspection.id)
         .limit(limit))
    with store.reader.connect() as conn:
        return [ReviewItem(r.id, r.part_id, r.lot, r.recipe, r.decision, r.started_at, r.score, r.confidence)
                for r in conn.execute(q)]


def queue_length(store: StationStore, *, include_check_capture: bool = False) -> int:
    """How many items wait (the queue list itself is capped at ``QUEUE_LIMIT``)."""
    q = select(func.count()).select_from(Inspection).where(_unlabelled(_decisions(include_check_capture)))
    with store.reader.connect() as conn:
        return int(conn.execute(q).scalar_one())


def _read_image(path: Path) -> np.ndarray | None:
    data = np.fromfile(path, np.uint8)
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None


def load_detail(store: StationStore, inspection_id: str) -> ReviewDetail:
    """The stored document, image and heatmap of one inspection.

    A missing or unreadable image file is reported in ``image_error`` (the supervisor can
    still decide, e.g. send the part to recapture), never raised; an unknown id raises
    ``LookupError``.
    """
    doc = store.get(inspection_id)
    if doc is None:
        raise LookupError(f"no inspection {inspection_id!r}")
    item = ReviewItem(inspection_id, doc.get("part_id", ""), doc.get("lot", ""), doc.get("recipe", ""),
                      doc.get("decision", ""), _parse_time(doc.get("started_at")), doc.get("score"),
                      doc.get("confidence"))
    detection = doc.get("detection") or {}
    threshold = detection.get("threshold")
    image = heatmap = None
    errors = []
    for name in ("image", "heatmap"):
        entry = doc.get(name)
        if not entry:
            continue
        path = store.images.path_of(entry["path"])
        try:
            arr = _read_image(path)
        except OSError as exc:
            errors.append(f"{name} file {path} cannot be read: {exc.strerror or exc}")
            continue
        if arr is None:
            errors.append(f"{name} file {path} is not a readable PNG")
        elif name == "image":
            image = arr
        else:
            heatmap = arr
    return ReviewDetail(item=item, document=doc, image=image, heatmap=heatmap, threshold=threshold,
                        spec_checks=list(doc.get("spec_checks") or []), image_error="; ".join(errors))


def load_for_display(store: StationStore, inspection_id: str) -> ReviewDetail:
    """:func:`load_detail` plus the RGB pictures with and without heatmap, made here (off
    the GUI thread) so showing and toggling them costs the GUI thread nothing but a paint."""
    d = load_detail(store, inspection_id)
    if d.image is not None:
        bits = (d.document.get("image") or {}).get("bit_depth")
        d.pictures[False] = display_rgb(d.image, bits)
        d.pictures[True] = display_rgb(d.image, bits, d.heatmap) if d.heatmap is not None else d.pictures[False]
    return d


def _parse_time(text: str | None) -> datetime:
    return parse_iso_utc(text) if text else datetime.min


def display_rgb(image: np.ndarray, bit_depth: int | None = None, heatmap: np.ndarray | None = None,
                alpha: float = 0.45) -> np.ndarray:
    """An 8-bit RGB picture of a stored image, with the heatmap blended on when given.

    16-bit images are scaled by their significant bits (Mono12 by 4095, not 65535). The
    heatmap (stored smaller) is stretched to the image and drawn only where it is warm,
    so the part stays visible around the anomaly.
    """
    img = image
    if img.dtype == np.uint16:
        top = float((1 << bit_depth) - 1) if bit_depth else float(max(1, int(img.max())))
        img = np.clip(img.astype(np.float32) * (255.0 / top), 0, 255).astype(np.uint8)
    rgb = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB) if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if heatmap is None:
        return np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    heat = cv2.resize(heatmap, (w, h), interpolation=cv2.INTER_LINEAR)
    colour = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    weight = (heat.astype(np.float32) / 255.0 * alpha)[..., None]
    weight[heat < 32] = 0.0  # cold pixels: leave the part as it is
    out = rgb.astype(np.float32) * (1.0 - weight) + colour.astype(np.float32) * weight
    return np.ascontiguousarray(out.astype(np.uint8))
