"""Build a dataset version from the station's own captured and reviewed inspections.

The label of an inspection is the latest *review* label a supervisor gave it (``labels``
table: good / defect with its class; ``recapture`` means "no usable image" and is left
out). Inspections nobody reviewed can be included by their decision (``pass`` taken as
good, ``reject`` as defect) when the query asks for it: a station that has run for a
while has thousands of confidently passed parts, and they are the good training images.

Splits are assigned by image hash, so the same selection always gives the same manifest:
good images 60 % train / 20 % validation / 20 % test, defect images half validation, half
test (an anomaly model trains on good images only).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from station.datasets.store import GOOD, LABEL_RE, DatasetEntry, DatasetError, DatasetInfo, DatasetStore
from station.store.db import make_engine
from station.store.schema import Inspection, Label

DB_FILENAME = "station.db"


@dataclass(frozen=True)
class InspectionQuery:
    """Which inspections to take: reviewed ones with these labels, plus unreviewed ones
    with these decisions (empty = none), optionally since a time, at most ``limit``."""

    labels: tuple[str, ...] = ("good", "defect")
    decisions: tuple[str, ...] = ()
    since: datetime | None = None
    limit: int | None = None


def _split_for(sha: str, good: bool) -> str:
    bucket = int(sha[:8], 16) % 10
    if good:
        return "train" if bucket < 6 else ("validation" if bucket < 8 else "test")
    return "validation" if bucket < 5 else "test"


def import_inspections(store: DatasetStore, name: str, data_dir: Path | str, query: InspectionQuery
                       ) -> tuple[DatasetInfo, bool]:
    """Import the selected inspections' images (hard links into the blob store where possible)."""
    data_dir = Path(data_dir)
    db = data_dir / DB_FILENAME
    if not db.exists():
        raise DatasetError(f"no station database in {data_dir}")
    bad = [d for d in query.decisions if d not in ("pass", "reject", "review")]
    if bad:
        raise DatasetError(f"decisions must be pass / reject / review, got {bad}")
    engine = make_engine(db, writer=False)
    try:
        with engine.connect() as conn:
            q = select(Inspection.id, Inspection.decision, Inspection.image_path, Inspection.image_sha256)
            q = q.where(Inspection.image_path.is_not(None)).order_by(Inspection.id)
            if query.since is not None:
                q = q.where(Inspection.started_at >= query.since)
            rows = conn.execute(q).all()
            labels: dict[str, tuple[str, str | None]] = {}
            lq = select(Label.inspection_id, Label.label, Label.defect_class).where(
                Label.source == "review", Label.inspection_id.is_not(None)).order_by(Label.id)
            for iid, label, cls in conn.execute(lq):
                labels[iid] = (label, cls)  # latest review wins
    finally:
        engine.dispose()
    entries = []
    for iid, decision, rel, sha in rows:
        if iid in labels:
            label, cls = labels[iid]
            if label not in query.labels or label == "recapture":
                continue
            name_ = GOOD if label == "good" else (cls or "defect")
        elif decision in query.decisions:
            name_ = GOOD if decision == "pass" else "defect"
            if decision == "review":
                continue  # an unreviewed review-queue part has no label at all
        else:
            continue
        if not LABEL_RE.match(name_):
            name_ = "defect"
        src = data_dir / rel
        try:
            data = src.read_bytes()
        except OSError as e:
            raise DatasetError(f"inspection {iid}: image {src} unreadable: {e}") from e
        blob, got = store.put_blob(data, src.suffix)
        if sha and got != sha:
            raise DatasetError(f"inspection {iid}: image {src} does not match its recorded hash")
        entries.append(DatasetEntry(blob, got, _split_for(got, name_ == GOOD), name_, source=f"inspection:{iid}"))
        if query.limit is not None and len(entries) >= query.limit:
            break
    if not entries:
        raise DatasetError(f"no inspections in {data_dir} match {query}")
    return store.create(name, entries, source=f"station:{data_dir.resolve()}",
                        meta={"labels": list(query.labels), "decisions": list(query.decisions)})
