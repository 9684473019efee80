"""The sync service's view of the outbox table: claim rows, record outcomes, expire claims.

The station is the main writer of the database, so this side keeps its write
transactions tiny and never scans under the write lock:

- candidates are chosen on a read-only connection (WAL readers take no lock);
- the claim itself is one short ``UPDATE ... WHERE status = 'pending' ... RETURNING``;
- outcomes (done / retry / dead) are buffered and written in one transaction per batch
  (:meth:`OutboxQueue.flush`), so thousands of deliveries cost a few commits a second;
- this process's commits are not fsynced (``synchronous=NORMAL``, see below).

A claim is a lease: the row becomes ``in_flight`` with ``next_attempt_at`` = the lease's
end, so a row whose owner died (SIGKILL, power cut) becomes claimable again when the
lease runs out; :meth:`release_all_claims` hands every claim back at start-up (only one
sync service runs per data directory). ``attempts`` counts claims, so a sink can tell a
first delivery from one that may already have reached the far side.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

from cloudsync.sinks.base import OutboxItem
from station.store import audit as audit_log
from station.store.db import DB_FILENAME, make_engine
from station.store.jsonutil import dumps, iso_utc

# Columns of the inspection that travel with an image as S3 object metadata.
IMAGE_METADATA_COLUMNS = ("station", "recipe", "part_id", "lot", "calibration_version",
                          "model_id", "model_version")

_REQUIRES_DONE = (
    "NOT EXISTS (SELECT 1 FROM json_each(o.payload, '$.requires') j "
    "JOIN outbox r ON r.idempotency_key = j.value WHERE r.status != 'done')"
)
_CANDIDATES_PENDING = (
    "SELECT o.id FROM outbox o WHERE o.status = 'pending' AND o.sink = :sink "
    f"AND o.next_attempt_at <= :now AND {_REQUIRES_DONE} ORDER BY o.priority, o.id LIMIT :n"
)
_CANDIDATES_EXPIRED = (
    "SELECT o.id FROM outbox o WHERE o.status = 'in_flight' AND o.sink = :sink "
    "AND o.next_attempt_at <= :now ORDER BY o.priority, o.id LIMIT :n"
)


def _bookkeeping_durability(dbapi_conn: Any, _record: Any) -> None:
    # Runs after the store's own connect hook (synchronous=FULL). The sync service's
    # writes are bookkeeping: with NORMAL a commit is not fsynced (it survives a crash of
    # this process, not a power cut). Losing the last "done" marks to a power cut only
    # means an idempotent re-send; in exchange the write lock is held for microseconds
    # instead of an fsync, so the station's own commits do not queue behind ours.
    dbapi_conn.execute("PRAGMA synchronous=NORMAL")


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class _Outcome:
    op: str  # done / retry / dead / release
    row_id: int
    at: str
    detail: Any = None
    error: str | None = None
    next_at: str | None = None


class OutboxQueue:
    """Claims and outcomes of outbox rows for one sync service process."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        db = self.data_dir / DB_FILENAME
        if not db.exists():
            raise FileNotFoundError(f"no station database in {self.data_dir}")
        self.writer = make_engine(db, writer=True)
        event.listen(self.writer, "connect", _bookkeeping_durability)
        self.reader = make_engine(db, writer=False)
        self._pending: list[_Outcome] = []
        self._status: dict[str, dict[str, Any]] = {}
        self._buf_lock = threading.Lock()
        self._write_lock = threading.Lock()  # one write transaction at a time in this process
        self.commits = 0

    def close(self) -> None:
        self.flush()
        self.writer.dispose()
        self.reader.dispose()

    # --- claiming ---------------------------------------------------------------------
    def claim(self, sink: str, limit: int, lease_s: float) -> list[OutboxItem]:
        """Up to ``limit`` deliverable rows of ``sink``, most urgent first, now leased to us.

        Deliverable: pending and due (or a claim whose lease ran out), and every row its
        payload ``requires`` is already done (S3 objects before the workflow start).
        """
        now = _now()
        params = {"sink": sink, "now": iso_utc(now), "n": int(limit)}
        with self.reader.connect() as conn:
            ids = [r[0] for r in conn.execute(text(_CANDIDATES_PENDING), params)]
            if len(ids) < limit:
                params["n"] = limit - len(ids)
                ids += [r[0] for r in conn.execute(text(_CANDIDATES_EXPIRED), params)]
        if not ids:
            return []
        marks = ",".join(str(int(i)) for i in ids)
        sql = (
            "UPDATE outbox SET status = 'in_flight', attempts = attempts + 1, next_attempt_at = :lease "
            f"WHERE id IN ({marks}) AND (status = 'pending' OR (status = 'in_flight' AND next_attempt_at <= :now)) "
            "RETURNING id, inspection_id, sink, kind, priority, payload, idempotency_key, attempts"
        )
        with self._write_lock, self.writer.begin() as conn:
            rows = conn.execute(text(sql), {"lease": iso_utc(now + timedelta(seconds=lease_s)),
                                            "now": iso_utc(now)}).all()
            self.commits += 1
        items = [self._item(r) for r in sorted(rows, key=lambda r: (r.priority, r.id))]
        return self._with_image_metadata(items)

    @staticmethod
    def _item(r: Any) -> OutboxItem:
        import json

        payload = r.payload if isinstance(r.payload, dict) else json.loads(r.payload)
        return OutboxItem(id=r.id, inspection_id=r.inspection_id, sink=r.sink, kind=r.kind,
                          priority=r.priority, payload=payload, idempotency_key=r.idempotency_key,
                          attempts=r.attempts)

    def _with_image_metadata(self, items: list[OutboxItem]) -> list[OutboxItem]:
        """Images carry their inspection's identity as object metadata; the outbox payload
        has only the file, so it is looked up here (read-only) unless the payload has it."""
        want = {i.inspection_id for i in items if i.kind == "image" and "metadata" not in i.payload
                and i.inspection_id}
        if not want:
            return items
        cols = ", ".join(IMAGE_METADATA_COLUMNS)
        marks = ",".join(f":i{n}" for n in range(len(want)))
        with self.reader.connect() as conn:
            rows = conn.execute(text(f"SELECT id, {cols} FROM inspections WHERE id IN ({marks})"),
                                {f"i{n}": v for n, v in enumerate(sorted(want))}).all()
        meta = {r[0]: {c: ("" if v is None else str(v)) for c, v in zip(IMAGE_METADATA_COLUMNS, r[1:])}
                for r in rows}
        out = []
        for i in items:
            if i.inspection_id in meta and i.kind == "image" and "metadata" not in i.payload:
                i = OutboxItem(i.id, i.inspection_id, i.sink, i.kind, i.priority,
                               {**i.payload, "metadata": meta[i.inspection_id]}, i.idempotency_key, i.attempts)
            out.append(i)
        return out

    def renew(self, ids: list[int], lease_s: float) -> None:
        """Extend the lease of rows still being worked on (long uploads, a slow link)."""
        if not ids:
            return
        marks = ",".join(str(int(i)) for i in ids)
        with self._write_lock, self.writer.begin() as conn:
            conn.execute(text(f"UPDATE outbox SET next_attempt_at = :lease WHERE id IN ({marks}) "
                              "AND status = 'in_flight'"),
                         {"lease": iso_utc(_now() + timedelta(seconds=lease_s))})
            self.commits += 1

    def release_all_claims(self) -> int:
        """Hand back every claim (start-up of the only sync service: their owner is gone)."""
        with self._write_lock, self.writer.begin() as conn:
            n = conn.execute(text("UPDATE outbox SET status = 'pending', next_attempt_at = :now "
                                  "WHERE status = 'in_flight'"), {"now": iso_utc(_now())}).rowcount
            self.commits += 1
        return int(n or 0)

    # --- outcomes (buffered) ----------------------------------------------------------
    def done(self, row_id: int, detail: dict[str, Any] | None) -> None:
        self._add(_Outcome("done", row_id, iso_utc(_now()), detail=detail))

    def retry(self, row_id: int, error: str, delay_s: float) -> None:
        now = _now()
        self._add(_Outcome("retry", row_id, iso_utc(now), error=error,
                           next_at=iso_utc(now + timedelta(seconds=delay_s))))

    def dead(self, row_id: int, reason: str) -> None:
        self._add(_Outcome("dead", row_id, iso_utc(_now()), error=reason))

    def release(self, row_id: int) -> None:
        """Give a claimed row back untried (shutdown): it does not count as an attempt."""
        self._add(_Outcome("release", row_id, iso_utc(_now())))

    def set_sink_status(self, sink: str, state: str, last_error: str | None,
                        last_success_at: float | None, detail: dict[str, Any]) -> None:
        with self._buf_lock:
            self._status[sink] = {
                "sink": sink, "state": state, "last_error": last_error,
                "last_success_at": iso_utc(last_success_at) if last_success_at else None,
                "updated_at": iso_utc(_now()), "detail": dumps(detail),
            }

    def _add(self, outcome: _Outcome) -> None:
        with self._buf_lock:
            self._pending.append(outcome)

    def buffered(self) -> int:
        with self._buf_lock:
            return len(self._pending)

    def flush(self) -> int:
        """Write every buffered outcome and sink status in one short transaction."""
        with self._write_lock:
            with self._buf_lock:
                batch, self._pending = self._pending, []
                status, self._status = list(self._status.values()), {}
            if not batch and not status:
                return 0
            try:
                with self.writer.begin() as conn:
                    self._write(conn, batch, status)
                self.commits += 1
            except BaseException:
                with self._buf_lock:  # keep them for the next flush: an outcome is never dropped
                    self._pending[:0] = batch
                    for s in status:
                        self._status.setdefault(s["sink"], s)
                raise
        return len(batch)

    @staticmethod
    def _write(conn: Any, batch: list[_Outcome], status: list[dict[str, Any]]) -> None:
        by_op: dict[str, list[dict[str, Any]]] = {}
        for o in batch:
            by_op.setdefault(o.op, []).append({
                "id": o.row_id, "at": o.at, "error": o.error, "next_at": o.next_at,
                "detail": None if o.detail is None else dumps(o.detail),
            })
        sql = {
            # 'done' is final: a late outcome of a re-claimed row never moves it back.
            "done": "UPDATE outbox SET status = 'done', delivered_at = :at, delivery_detail = :detail, "
                    "last_error = NULL WHERE id = :id AND status != 'done'",
            "retry": "UPDATE outbox SET status = 'pending', next_attempt_at = :next_at, last_error = :error "
                     "WHERE id = :id AND status = 'in_flight'",
            "dead": "UPDATE outbox SET status = 'dead', last_error = :error, next_attempt_at = :at "
                    "WHERE id = :id AND status = 'in_flight'",
            "release": "UPDATE outbox SET status = 'pending', next_attempt_at = :at, "
                       "attempts = MAX(attempts - 1, 0) WHERE id = :id AND status = 'in_flight'",
        }
        for op in ("done", "retry", "dead", "release"):
            if op in by_op:
                conn.execute(text(sql[op]), by_op[op])
        if status:
            conn.execute(text(
                "INSERT INTO sink_status (sink, state, last_error, last_success_at, updated_at, detail) "
                "VALUES (:sink, :state, :last_error, :last_success_at, :updated_at, :detail) "
                "ON CONFLICT(sink) DO UPDATE SET state = excluded.state, last_error = excluded.last_error, "
                "last_success_at = COALESCE(excluded.last_success_at, sink_status.last_success_at), "
                "updated_at = excluded.updated_at, detail = excluded.detail"), status)

    # --- dead letters -----------------------------------------------------------------
    def retry_dead(self, sink: str | None = None, actor: str = "sync") -> int:
        """Put dead letters (of one sink, or all) back in the queue; audited."""
        where = "status = 'dead'" + (" AND sink = :sink" if sink else "")
        with self._write_lock, self.writer.begin() as conn:
            n = conn.execute(text(f"UPDATE outbox SET status = 'pending', attempts = 0, "
                                  f"next_attempt_at = :now WHERE {where}"),
                             {"now": iso_utc(_now()), "sink": sink}).rowcount or 0
            if n:
                audit_log.append(conn, actor=actor, action="sync.retry_dead", subject=sink or "*",
                                 payload={"rows": int(n)})
            self.commits += 1
        return int(n)
