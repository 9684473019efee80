"""The station's durable local record: one SQLite file plus content-addressed images.

``record_inspection`` is the Record step of the cycle:

1. the image (and heatmap) file is written and fsynced (:mod:`station.store.images`);
2. ONE ``BEGIN IMMEDIATE`` transaction inserts the inspection, its spec results, its audit
   entry and its outbox rows, and commits (WAL fsynced: ``synchronous=FULL``).

A crash anywhere leaves the whole record or none of it; at worst an image file nobody
references, which :meth:`StationStore.recover` (run at open) deletes.

One process owns a data directory as its writer (an ``flock`` on ``station.lock``, taken
at open when recovering, or at the first write); readers - the sync service, ``audit
verify`` - open the database without it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from station.durable import try_lock_file
from station.store import audit as audit_log
from station.store.audit import AuditReport
from station.store.db import DB_FILENAME, make_engine, upgrade
from station.store.errors import DuplicateInspection, StoreDiskFull, StoreError, StoreLocked
from station.store.images import ImageStore, PngOptions, StoredImage
from station.store.jsonutil import canonical
from station.store.outbox import outbox_rows_for, with_original_key
from station.store.record import RECORD_SCHEMA_VERSION, InspectionRecord
from station.store.schema import AuditEntry, Inspection, OutboxRow, SpecResult

log = logging.getLogger(__name__)

LOCK_FILENAME = "station.lock"
_IMAGE_NAME = re.compile(r"^images/[0-9a-f]{2}/[0-9a-f]{64}\.png$")
_ORIGINAL_NAME = re.compile(r"^originals/[0-9a-f]{2}/[0-9a-f]{64}\.[a-z0-9]+$")
# Where a record names its kept original (StoreRecorder sets ``meta.original.stored``): in
# the inspection row's document, and in the document an s3 result row of the outbox carries.
_REFERENCED_ORIGINALS = (
    "SELECT json_extract(record, '$.meta.original.stored') FROM inspections",
    "SELECT json_extract(payload, '$.document.meta.original.stored') FROM outbox "
    "WHERE sink = 's3' AND kind = 'result'",
)
_TRAILING_NUMBER = re.compile(r"(\d+)$")
_SQLITE_FULL = 13


@dataclass
class RecoveryReport:
    """What :meth:`StationStore.recover` found and cleaned up."""

    removed_tmp: list[str] = field(default_factory=list)  # partial writes in images/.tmp
    removed_stray: list[str] = field(default_factory=list)  # finished images no row references
    missing_images: list[str] = field(default_factory=list)  # referenced files that are gone
    removed_originals: list[str] = field(default_factory=list)  # kept originals no record names
    missing_originals: list[str] = field(default_factory=list)  # named originals that are gone
    audit: AuditReport | None = None
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return (not self.missing_images and not self.missing_originals
                and (self.audit is None or self.audit.ok))

    def summary(self) -> str:
        audit = "not checked" if self.audit is None else (
            f"{self.audit.count} entries intact" if self.audit.ok
            else f"BROKEN at {self.audit.first_broken_seq}: {self.audit.reason}")
        return (f"recovery: removed {len(self.removed_tmp)} tmp, {len(self.removed_stray)} "
                f"stray image and {len(self.removed_originals)} orphaned original files; "
                f"{len(self.missing_images)} referenced images and {len(self.missing_originals)} "
                f"named originals missing; audit chain {audit}")


HEATMAP_MAX_SIDE = 640
HEATMAP_PNG = PngOptions(1, cv2.IMWRITE_PNG_FILTER_UP, cv2.IMWRITE_PNG_STRATEGY_DEFAULT)


def heatmap_image(heatmap: np.ndarray, max_side: int = HEATMAP_MAX_SIDE) -> np.ndarray:
    """The 8-bit image kept for a heatmap (detectors give float 0..1).

    A heatmap is a picture for people, smooth by nature: at most ``max_side`` pixels on
    its long side (the UI scales it onto the frame) it costs ~1 ms and tens of kB instead
    of ~13 ms and a megabyte at full 1.3 MP resolution.
    """
    if heatmap.dtype == np.bool_:
        h = heatmap.astype(np.uint8) * 255
    elif heatmap.dtype == np.uint8:
        h = heatmap
    else:
        f = np.nan_to_num(np.asarray(heatmap, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        if heatmap.dtype == np.uint16:
            f = f / 65535.0
        h = np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)
    side = max(h.shape[:2])
    if side > max_side:
        scale = max_side / side
        size = (max(1, round(h.shape[1] * scale)), max(1, round(h.shape[0] * scale)))
        h = cv2.resize(h, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(h)


def _classify(exc: SQLAlchemyError, what: str) -> StoreError:
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlite_errorcode", None)
    msg = str(orig or exc)
    if code == _SQLITE_FULL or "database or disk is full" in msg:
        return StoreDiskFull(f"disk full: the database cannot grow, {what} was not recorded ({msg})")
    if isinstance(orig, sqlite3.OperationalError) and "locked" in msg:
        return StoreError(f"database busy: another process held the write lock too long; {what} not recorded")
    return StoreError(f"database error, {what} not recorded: {msg}")


class StationStore:
    """The local record of one station: inspections, spec results, audit log, outbox, images."""

    def __init__(
        self,
        data_dir: Path,
        *,
        plant: str = "plant1",
        line: str = "line1",
        station: str = "station1",
        recover: bool = True,
        png: PngOptions | None = None,
        actor: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.plant, self.line, self.station = plant, line, station
        self.actor = actor or f"station:{station}"
        self.db_path = self.data_dir / DB_FILENAME
        self._lock = threading.RLock()  # serialises this process's writes
        self._lock_fd: int | None = None
        self.last_timings: dict[str, float] = {}
        self.recovery_report: RecoveryReport | None = None
        self.engine = make_engine(self.db_path, writer=True)
        try:
            try:
                upgrade(self.engine)
            except SQLAlchemyError as exc:
                raise _classify(exc, "the schema upgrade") from exc
            self.reader = make_engine(self.db_path, writer=False)
            self.images = ImageStore(self.data_dir, png=png)
            if recover:
                self.recovery_report = self.recover()
        except BaseException:
            self.close()
            raise
        if self.recovery_report and (not self.recovery_report.ok or self.recovery_report.removed_stray
                                     or self.recovery_report.removed_originals):
            log.warning("%s", self.recovery_report.summary())

    # --- lifecycle -------------------------------------------------------------------
    def _claim_writer(self) -> None:
        if self._lock_fd is not None:
            return
        fd = try_lock_file(self.data_dir / LOCK_FILENAME)
        if fd is None:
            raise StoreLocked(f"{self.data_dir} is in use by another station process")
        self._lock_fd = fd

    def close(self) -> None:
        with self._lock:
            self.engine.dispose()
            if hasattr(self, "reader"):
                self.reader.dispose()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None

    def __enter__(self) -> StationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the Record step -------------------------------------------------------------
    def record_inspection(
        self,
        record: InspectionRecord,
        image: np.ndarray | None,
        heatmap: np.ndarray | None = None,
    ) -> str:
        """Durably record one inspection; return its id once committed.

        Raises :class:`StoreError` (:class:`StoreDiskFull` when the disk is full,
        :class:`DuplicateInspection` for a repeated id); nothing is committed then.
        """
        t0 = time.perf_counter()
        with self._lock:
            self._claim_writer()
            written: list[StoredImage] = []
            try:
                stored = self.images.put(image, bit_depth=record.bit_depth) if image is not None else None
                if stored:
                    written.append(stored)
                t1 = time.perf_counter()
                stored_hm = self.images.put(heatmap_image(heatmap), png=HEATMAP_PNG) if heatmap is not None else None
                if stored_hm:
                    written.append(stored_hm)
                t2 = time.perf_counter()
                recorded_at = datetime.now(timezone.utc)
                try:
                    doc = record.to_document(stored, stored_hm, recorded_at=recorded_at)
                    doc = with_original_key(doc, record, plant=self.plant, line=self.line, station=self.station)
                except (TypeError, ValueError) as exc:
                    raise StoreError(f"inspection {record.id} cannot be stored as JSON: {exc}") from exc
                insp_row = self._inspection_row(record, doc, stored, stored_hm, recorded_at)
                spec_rows = [
                    {"inspection_id": record.id, **{k: c[k] for k in
                     ("name", "value", "low", "high", "passed", "unit", "message")}}
                    for c in doc["spec_checks"]
                ]
                outbox_rows = outbox_rows_for(
                    record, stored, plant=self.plant, line=self.line, station=self.station,
                    document=doc, now=doc["recorded_at"],
                )
                audit_payload = {
                    "part_id": record.part_id,
                    "decision": record.decision,
                    "verdict": record.verdict,
                    "image_sha256": stored.sha256 if stored else None,
                    "record_sha256": hashlib.sha256(canonical(doc).encode()).hexdigest(),
                }
                t3 = time.perf_counter()
                self._commit(record.id, insp_row, spec_rows, audit_payload, outbox_rows, doc["recorded_at"])
            except Exception:
                # Nothing was committed: images this call created are referenced by nothing
                # (all writes of this process hold self._lock, so no other record can have
                # picked them up). On BaseException (KeyboardInterrupt) we cannot be sure the
                # commit did not happen: leave any stray file to recover().
                for s in written:
                    if s.created:
                        self.images.remove(s.relpath)
                raise
            t4 = time.perf_counter()
        self.last_timings = {
            "image_ms": (t1 - t0) * 1e3,
            "heatmap_ms": (t2 - t1) * 1e3,
            "prepare_ms": (t3 - t2) * 1e3,
            "commit_ms": (t4 - t3) * 1e3,
            "total_ms": (t4 - t0) * 1e3,
        }
        return record.id

    def _inspection_row(
        self,
        record: InspectionRecord,
        doc: dict[str, Any],
        image: StoredImage | None,
        heatmap: StoredImage | None,
        recorded_at: datetime,
    ) -> dict[str, Any]:
        return {
            "id": record.id,
            "station": record.station,
            "recipe": record.recipe,
            "part_id": record.part_id,
            "lot": record.lot,
            "started_at": record.started_at,
            "finished_at": record.finished_at,
            "recorded_at": recorded_at,
            "config_hash": record.config_hash,
            "calibration_version": record.calibration_version,
            "model_id": record.model_id,
            "model_version": record.model_version,
            "model_hash": record.model_hash,
            "camera": doc["camera"],
            "decision": record.decision,
            "verdict": record.verdict,
            "reason": record.reason,
            "score": doc["score"],
            "is_anomalous": doc["is_anomalous"],
            "confidence": doc["confidence"],
            "detection": doc["detection"],
            "fault": doc["fault"],
            "timings_ms": doc["timings_ms"],
            "image_path": image.relpath if image else None,
            "image_sha256": image.sha256 if image else None,
            "image_dtype": image.dtype if image else None,
            "image_shape": list(image.shape) if image else None,
            "image_bit_depth": image.bit_depth if image else None,
            "heatmap_path": heatmap.relpath if heatmap else None,
            "schema_version": RECORD_SCHEMA_VERSION,
            "record": doc,
        }

    def _commit(
        self,
        inspection_id: str,
        insp_row: dict[str, Any],
        spec_rows: list[dict[str, Any]],
        audit_payload: dict[str, Any],
        outbox_rows: list[dict[str, Any]],
        at: str,
    ) -> None:
        what = f"inspection {inspection_id}"
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(Inspection.__table__), [insp_row])
                if spec_rows:
                    conn.execute(insert(SpecResult.__table__), spec_rows)
                audit_log.append(
                    conn, actor=self.actor, action="inspection.recorded",
                    subject=inspection_id, payload=audit_payload, at=at,
                )
                conn.execute(insert(OutboxRow.__table__), outbox_rows)
        except IntegrityError as exc:
            if "inspections.id" in str(exc.orig):
                raise DuplicateInspection(f"{what} is already recorded") from exc
            raise StoreError(f"{what} violates a database constraint: {exc.orig}") from exc
        except SQLAlchemyError as exc:
            raise _classify(exc, what) from exc

    def audit(self, action: str, subject: str = "", payload: Any = None, *, actor: str | None = None) -> int:
        """Append one audit entry in its own transaction (operator actions, deploys...)."""
        with self._lock:
            try:
                with self.engine.begin() as conn:
                    seq, _ = audit_log.append(conn, actor=actor or self.actor, action=action,
                                              subject=subject, payload=payload)
            except SQLAlchemyError as exc:
                raise _classify(exc, f"audit entry {action!r}") from exc
        return seq

    # --- recovery and verification ---------------------------------------------------
    def recover(self) -> RecoveryReport:
        """Clean up after a crash: partial and unreferenced image and original files; check
        the chain.

        Run at open, before this process records anything: an X-ray original is kept
        (:meth:`ImageStore.put_original`) before the record naming it is committed, so while a
        cycle runs a just-kept original is not yet named anywhere. Takes the writer lock of the
        data directory (StoreLocked if another process has it). Records what it removed in the
        audit log.
        """
        t0 = time.perf_counter()
        with self._lock:
            self._claim_writer()
            report = RecoveryReport()
            for tmp in self.images.tmp_files():
                tmp.unlink(missing_ok=True)
                report.removed_tmp.append(tmp.name)
            with self.reader.connect() as conn:
                referenced = {
                    p for row in conn.execute(
                        select(Inspection.image_path, Inspection.heatmap_path).where(
                            (Inspection.image_path.is_not(None)) | (Inspection.heatmap_path.is_not(None))
                        )
                    ) for p in row if p
                }
            on_disk = set(self.images.iter_files())
            report.removed_stray += self._remove_unnamed(on_disk - referenced, _IMAGE_NAME, "in the image store")
            report.missing_images = sorted(referenced - on_disk)
            self._recover_originals(report)
            report.audit = audit_log.verify(self.reader)
            if (report.removed_tmp or report.removed_stray or report.missing_images
                    or report.removed_originals or report.missing_originals):
                self.audit("store.recovered", str(self.db_path.name), {
                    "removed_tmp": len(report.removed_tmp),
                    "removed_stray": len(report.removed_stray),
                    "missing_images": report.missing_images[:100],
                    "removed_originals": report.removed_originals[:100],
                    "missing_originals": report.missing_originals[:100],
                })
            report.duration_ms = (time.perf_counter() - t0) * 1e3
        return report

    def _recover_originals(self, report: RecoveryReport) -> None:
        """Remove kept originals no record names (a crash between the original's write and
        the commit), as :meth:`recover` does for images; report named ones that are gone."""
        on_disk = set(self.images.iter_originals())
        with self.reader.connect() as conn:
            named = {rel for q in _REFERENCED_ORIGINALS for (rel,) in conn.exec_driver_sql(q) if rel}
        report.removed_originals += self._remove_unnamed(on_disk - named, _ORIGINAL_NAME, "among the kept originals")
        report.missing_originals = sorted(named - on_disk)

    def _remove_unnamed(self, unnamed: set[str], own_name: re.Pattern[str], where: str) -> list[str]:
        """Remove the files no record names, but only those with the store's own names;
        anything else is left alone (and logged). Returns what was removed."""
        removed = []
        for rel in sorted(unnamed):
            if own_name.match(rel):
                self.images.remove(rel)
                removed.append(rel)
            else:
                log.warning("unexpected file %s left alone: %s", where, rel)
        return removed

    def audit_verify(self, *, records: bool = True) -> AuditReport:
        """Check the audit chain, that every inspection has its entry and, with
        ``records``, that every stored record still hashes to what its entry says."""
        report = audit_log.verify(self.reader)
        if not report.ok:
            return report
        with self.reader.connect() as conn:
            orphan = conn.exec_driver_sql(
                "SELECT i.id FROM inspections i WHERE NOT EXISTS (SELECT 1 FROM audit_log a "
                "WHERE a.subject = i.id AND a.action = 'inspection.recorded') ORDER BY i.id LIMIT 1"
            ).scalar()
            if orphan is not None:
                after = report.head_seq or 0
                return AuditReport(False, report.count, after + 1, (
                    f"inspection {orphan} has no audit entry: entries after {after} were "
                    f"removed from the end of the log"), report.head_seq, report.head_hash)
            if records:
                rows = conn.exec_driver_sql(
                    "SELECT a.seq, a.payload, i.record FROM audit_log a JOIN inspections i "
                    "ON i.id = a.subject WHERE a.action = 'inspection.recorded' ORDER BY a.seq"
                )
                for seq, payload, record_text in rows:
                    expected = json.loads(payload).get("record_sha256")
                    actual = hashlib.sha256(canonical(json.loads(record_text)).encode()).hexdigest()
                    if expected != actual:
                        return AuditReport(False, report.count, seq, (
                            f"the inspection record of entry {seq} was altered after it was "
                            f"recorded"), report.head_seq, report.head_hash)
        return report

    # --- reading ---------------------------------------------------------------------
    def get(self, inspection_id: str) -> dict[str, Any] | None:
        """The self-describing document of one inspection (None if unknown)."""
        with self.reader.connect() as conn:
            return conn.execute(select(Inspection.record).where(Inspection.id == inspection_id)).scalar()

    def recent(self, n: int = 20) -> list[dict[str, Any]]:
        """The last ``n`` inspections' documents, newest first."""
        with self.reader.connect() as conn:
            return list(conn.execute(select(Inspection.record).order_by(Inspection.id.desc()).limit(n)).scalars())

    def count(self, decision: str | None = None) -> int:
        q = select(func.count()).select_from(Inspection)
        if decision is not None:
            q = q.where(Inspection.decision == decision)
        with self.reader.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def decision_counts(self, since: datetime | None = None) -> dict[str, int]:
        """Inspections per decision (optionally since a time): the shift counters."""
        q = select(Inspection.decision, func.count()).group_by(Inspection.decision)
        if since is not None:
            q = q.where(Inspection.started_at >= since)
        with self.reader.connect() as conn:
            return {d: int(n) for d, n in conn.execute(q)}

    def last_part_id(self, prefix: str = "") -> str | None:
        """The part id of the most recent inspection whose part id starts with ``prefix``."""
        q = select(Inspection.part_id).order_by(Inspection.id.desc()).limit(1)
        if prefix:
            q = q.where(Inspection.part_id.startswith(prefix, autoescape=True))
        with self.reader.connect() as conn:
            return conn.execute(q).scalar()

    def part_counter(self, prefix: str = "") -> int:
        """The trailing number of :meth:`last_part_id` (0 if none): a restarted station
        carries on numbering parts from ``part_counter(prefix) + 1``."""
        last = self.last_part_id(prefix)
        m = _TRAILING_NUMBER.search(last[len(prefix):] if last else "")
        return int(m.group(1)) if m else 0

    def outbox_counts(self) -> dict[str, int]:
        """Outbox rows per status (``pending`` is what still waits for the network)."""
        with self.reader.connect() as conn:
            return {s: int(n) for s, n in conn.execute(
                select(OutboxRow.status, func.count()).group_by(OutboxRow.status))}

    def audit_entries(self, subject: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The last ``limit`` audit entries (of ``subject``), oldest first."""
        q = select(*AuditEntry.__table__.c).order_by(AuditEntry.seq.desc()).limit(limit)
        if subject is not None:
            q = q.where(AuditEntry.subject == subject)
        with self.reader.connect() as conn:
            return [dict(r._mapping) for r in reversed(conn.execute(q).all())]

    def image_path(self, inspection_id: str) -> Path | None:
        """The image file of an inspection (None for a capture fault without image)."""
        with self.reader.connect() as conn:
            rel = conn.execute(select(Inspection.image_path).where(Inspection.id == inspection_id)).scalar()
        return self.images.path_of(rel) if rel else None

    def checkpoint(self) -> None:
        """Fold the WAL back into the database file (idle time, shutdown)."""
        with self._lock:
            self._pragma("wal_checkpoint(TRUNCATE)")

    def _pragma(self, pragma: str) -> Any:
        # On the raw writer connection, outside any transaction (a checkpoint cannot run
        # inside one, and a pragma read should not take the write lock).
        raw = self.engine.raw_connection()
        try:
            return raw.driver_connection.execute(f"PRAGMA {pragma}").fetchone()[0]
        finally:
            raw.close()

    def storage_info(self) -> dict[str, Any]:
        """The durability settings in force on the writer connection, and where things are."""
        with self._lock:
            info = {p: self._pragma(p) for p in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")}
        with self.reader.connect() as conn:
            info["schema_revision"] = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        info["db_path"] = str(self.db_path)
        info["images_dir"] = str(self.images.root)
        return info
