"""The sync service's view of the outbox table: claim rows, record outcomes, expire claims.

The station is the main writer of the database, so this side keeps its write
transactions tiny and never scans under the write lock:

- candidates are chosen on a read-only connection (WAL readers take no lock);
- the claim itself is one ``UPDATE ... WHERE status = 'pending'`` (the rows are then read
  back on the reader), and outcomes (done / retry / dead) are buffered and written as one
  ``UPDATE ... FROM json_each(batch)`` per flush (:meth:`OutboxQueue.flush`): thousands
  of deliveries cost a few commits a second, and each write is a single statement in
  autocommit mode, so the write lock is held inside one sqlite3 call (never across a
  GIL hand-off, see :meth:`OutboxQueue._write_one`);
- this process's commits are not fsynced (``synchronous=NORMAL``, see below).

A claim is a lease: the row becomes ``in_flight`` with ``next_attempt_at`` = the lease's
end, so a row whose owner died (SIGKILL, power cut) becomes claimable again when the
lease runs out; :meth:`release_all_claims` hands every claim back at start-up (only one
sync service runs per data directory). ``attempts`` counts claims, so a sink can tell a
first delivery from one that may already have reached the far side.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

from cloudsync.sinks.base import OutboxItem
from station.store import audit as audit_log
from station.store.db import DB_FILENAME, make_engine
from station.store.jsonutil import dumps, iso_utc

# Columns of the inspection that travel with an image (or X-ray original) as S3 object metadata.
FILE_KINDS = ("image", "original")
IMAGE_METADATA_COLUMNS = ("station", "recipe", "part_id", "lot", "calibration_version",
                          "model_id", "model_version")

_REQUIRES_DONE = (
    "NOT EXISTS (SELECT 1 FROM json_each(o.payload, '$.requires') j "
    "JOIN outbox r ON r.idempotency_key = j.value WHERE r.status != 'done')"
)
# One window of this sink's claim index (sink, status, priority, id; migration 0003) after a
# cursor: ``priority = :p AND id > :i`` (not a row-value comparison) so SQLite seeks to the
# cursor instead of re-reading the priority block from its start, and never reads another
# sink's rows (results, workflow starts and MES posts share a priority).
# ONE result row per window: Python's sqlite3 releases the GIL around every row it steps,
# and with a dozen busy upload threads each re-acquisition waits a switch interval, so a
# 2,000-row window returned row by row took seconds. The aggregate returns: how many index
# entries were read, the last one, and the eligible ids (due, and what they require done).
_WINDOW_SAME = text(
    "WITH w AS MATERIALIZED (SELECT o.id, o.next_attempt_at FROM outbox o "
    "WHERE o.sink = :sink AND o.status = 'pending' AND o.priority = :p AND o.id > :i ORDER BY o.id LIMIT :w), "
    "e AS (SELECT o.id FROM w JOIN outbox o ON o.id = w.id WHERE w.next_attempt_at <= :now "
    f"AND {_REQUIRES_DONE} ORDER BY o.id LIMIT :n) "
    "SELECT (SELECT COUNT(*) FROM w), (SELECT MAX(id) FROM w), (SELECT group_concat(id) FROM e)"
)
_LEVELS = text("SELECT DISTINCT priority FROM outbox WHERE sink = :sink AND status = 'pending' ORDER BY priority")
# The unary + keeps SQLite on the inspection_id index (it would otherwise walk every
# pending row through the claim index: seconds on a 100,000-record backlog).
_HINTED = text(
    "SELECT o.id FROM outbox o WHERE o.inspection_id IN (SELECT value FROM json_each(:hints)) AND +o.sink = :sink "
    "AND +o.status = 'pending' AND o.next_attempt_at <= :now "
    f"AND json_array_length(o.payload, '$.requires') > 0 AND {_REQUIRES_DONE} "  # only what waited
    "ORDER BY o.priority, o.id LIMIT :n"
)
_CANDIDATES_EXPIRED = text(
    "SELECT o.id FROM outbox o WHERE o.status = 'in_flight' AND o.sink = :sink "
    "AND o.next_attempt_at <= :now ORDER BY o.priority, o.id LIMIT :n"
)
# Statements take id lists as one JSON array (json_each), not a literal IN list: one SQL
# text for every call, so SQLAlchemy and sqlite3 compile each statement once and their
# statement caches do not fill with one-off strings (CPU and memory on a long drain).
_CLAIM = (
    "UPDATE outbox SET status = 'in_flight', attempts = attempts + 1, next_attempt_at = :lease "
    "WHERE id IN (SELECT value FROM json_each(:ids)) "
    "AND (+status = 'pending' OR (+status = 'in_flight' AND next_attempt_at <= :now))"  # + : by rowid
)
_CLAIMED = text(
    "SELECT id, inspection_id, sink, kind, priority, payload, idempotency_key, attempts FROM outbox "
    "WHERE id IN (SELECT value FROM json_each(:ids)) AND +status = 'in_flight' AND +next_attempt_at = :lease"
)
# Every outcome of a flush in ONE statement (done / retry / dead / release per entry).
_OUTCOMES = (
    "UPDATE outbox SET "
    "status = CASE b.op WHEN 'done' THEN 'done' WHEN 'dead' THEN 'dead' ELSE 'pending' END, "
    "delivered_at = CASE b.op WHEN 'done' THEN b.at ELSE outbox.delivered_at END, "
    "delivery_detail = CASE b.op WHEN 'done' THEN b.detail ELSE outbox.delivery_detail END, "
    "last_error = CASE b.op WHEN 'done' THEN NULL WHEN 'release' THEN outbox.last_error ELSE b.error END, "
    "next_attempt_at = CASE b.op WHEN 'retry' THEN b.next_at WHEN 'done' THEN outbox.next_attempt_at "
    "ELSE b.at END, "
    "attempts = CASE b.op WHEN 'release' THEN MAX(outbox.attempts - 1, 0) ELSE outbox.attempts END "
    "FROM (SELECT value ->> '$.id' AS id, value ->> '$.op' AS op, value ->> '$.at' AS at, "
    "value ->> '$.error' AS error, value ->> '$.next_at' AS next_at, value ->> '$.detail' AS detail "
    "FROM json_each(:batch)) AS b "
    # 'done' is final: a late outcome of a re-claimed row never moves it back.
    "WHERE outbox.id = b.id AND CASE b.op WHEN 'done' THEN outbox.status != 'done' "
    "ELSE outbox.status = 'in_flight' END"
)
_SINK_STATUS = (
    "INSERT INTO sink_status (sink, state, last_error, last_success_at, updated_at, detail) "
    "SELECT value ->> '$.sink', value ->> '$.state', value ->> '$.last_error', value ->> '$.last_success_at', "
    "value ->> '$.updated_at', value ->> '$.detail' FROM json_each(:rows) WHERE true "
    "ON CONFLICT(sink) DO UPDATE SET state = excluded.state, last_error = excluded.last_error, "
    "last_success_at = COALESCE(excluded.last_success_at, sink_status.last_success_at), "
    "updated_at = excluded.updated_at, detail = excluded.detail"
)
_RENEW = ("UPDATE outbox SET next_attempt_at = :lease WHERE id IN (SELECT value FROM json_each(:ids)) "
          "AND +status = 'in_flight'")
_IMAGE_METADATA = text(f"SELECT id, {', '.join(IMAGE_METADATA_COLUMNS)} FROM inspections "
                       "WHERE id IN (SELECT value FROM json_each(:ids))")
WINDOW_ROWS = 4000  # at most this many index entries per window: bounded work per claim
MIN_WINDOW = 256
MAX_WINDOWS = 8  # per claim call; the next call carries on from the cursor
RESCAN_S = 5.0  # a sink's cursor goes back to the most urgent rows this often
HINTS_KEPT = 20_000
CHECKPOINT_EVERY_S = 1.0  # this process checkpoints the WAL (see OutboxQueue._checkpoint_if_due)


@dataclass
class _Cursor:
    levels: list[int]  # the priorities still to walk in this pass
    id: int = -1
    reset_at: float = -1e9
    hint_seq: int = 0
    window: int = 256  # index entries per window: grows while nothing is found, shrinks when full

    @property
    def at_end(self) -> bool:
        return not self.levels


def _bookkeeping_durability(dbapi_conn: Any, _record: Any) -> None:
    # Runs after the store's own connect hook (synchronous=FULL). The sync service's
    # writes are bookkeeping: with NORMAL a commit is not fsynced (it survives a crash of
    # this process, not a power cut). Losing the last "done" marks to a power cut only
    # means an idempotent re-send; in exchange the write lock is held for microseconds
    # instead of an fsync, so the station's own commits do not queue behind ours.
    dbapi_conn.execute("PRAGMA synchronous=NORMAL")


def _id_list(ids: list[int]) -> str:
    return json.dumps([int(i) for i in ids])


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
    inspection_id: str | None = None

    def entry(self) -> dict[str, Any]:
        """This outcome as one element of the ``_OUTCOMES`` statement's JSON batch."""
        return {"id": self.row_id, "op": self.op, "at": self.at, "error": self.error, "next_at": self.next_at,
                "detail": None if self.detail is None else dumps(self.detail)}


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
        self._cursors: dict[str, _Cursor] = {}
        self._hints: deque[str] = deque(maxlen=HINTS_KEPT)  # inspections with a row just done
        self._hint_seq = 0
        self._status: dict[str, dict[str, Any]] = {}
        self._buf_lock = threading.Lock()
        self._write_lock = threading.RLock()  # one write at a time in this process (flush nests)
        self.commits = 0
        self._checkpointed_at = 0.0

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
        ids = self._candidates(sink, limit, iso_utc(now))
        if not ids:
            return []
        params = {"ids": _id_list(ids), "lease": iso_utc(now + timedelta(seconds=lease_s)), "now": iso_utc(now)}
        self._write_one(_CLAIM, params)
        with self.reader.connect() as conn:  # what we claimed: in flight under our lease
            rows = conn.execute(_CLAIMED, params).all()
        items = [self._item(r) for r in sorted(rows, key=lambda r: (r.priority, r.id))]
        return self._with_image_metadata(items)

    def _candidates(self, sink: str, limit: int, now: str) -> list[int]:
        """Row ids to claim, found with bounded work however long the backlog is.

        1. rows of inspections whose other rows were just delivered (what ``requires``
           was waiting for), by the inspection index;
        2. a cursor walking the claim index (status, priority, id) one window at a time,
           back to the most urgent rows every :data:`RESCAN_S`; at the end of the index
           it waits for the next rescan instead of re-reading everything;
        3. claims whose lease ran out (their owner died).
        """
        cur = self._cursors.setdefault(sink, _Cursor([]))
        found: list[int] = []
        with self.reader.connect() as conn:
            hinted = self._new_hints(cur)
            for start in range(0, len(hinted), 500):
                if len(found) >= limit:
                    break
                params = {"sink": sink, "now": now, "n": limit - len(found),
                          "hints": json.dumps(hinted[start:start + 500])}
                found += [r[0] for r in conn.execute(_HINTED, params) if r[0] not in found]
            clock = time.monotonic()
            if clock - cur.reset_at >= RESCAN_S:
                # Back to the most urgent rows (only the priorities this sink has rows in).
                cur.levels = [r[0] for r in conn.execute(_LEVELS, {"sink": sink})]
                cur.id, cur.reset_at = -1, clock
            windows = 0
            while len(found) < limit and not cur.at_end and windows < MAX_WINDOWS:
                read, last, eligible = conn.execute(_WINDOW_SAME, {
                    "sink": sink, "now": now, "p": cur.levels[0], "i": cur.id, "w": cur.window,
                    "n": limit - len(found)}).one()
                windows += 1
                new_ids = [int(x) for x in eligible.split(",")] if eligible else []
                found += [i for i in new_ids if i not in found]
                if len(found) >= limit and new_ids:
                    cur.id = new_ids[-1]  # carry on right after the last row taken
                elif last is not None:
                    cur.id = int(last)
                full = read == cur.window
                cur.window = (max(MIN_WINDOW, cur.window // 2) if len(found) >= limit
                              else min(WINDOW_ROWS, cur.window * 4) if not new_ids else cur.window)
                if not full and len(found) < limit:
                    cur.levels.pop(0)  # this priority is read to its end: the next one
                    cur.id = -1
            if len(found) < limit:
                found += [r[0] for r in conn.execute(_CANDIDATES_EXPIRED,
                                                     {"sink": sink, "now": now, "n": limit - len(found)})]
        return found

    def _new_hints(self, cur: _Cursor) -> list[str]:
        with self._buf_lock:
            seq = self._hint_seq
            if seq - cur.hint_seq > len(self._hints):  # fell behind: the cursor rescan covers it
                cur.hint_seq = seq - len(self._hints)
            new = list(self._hints)[len(self._hints) - (seq - cur.hint_seq):] if seq > cur.hint_seq else []
            cur.hint_seq = seq
        return sorted(set(new))

    @staticmethod
    def _item(r: Any) -> OutboxItem:
        payload = r.payload if isinstance(r.payload, dict) else json.loads(r.payload)
        return OutboxItem(id=r.id, inspection_id=r.inspection_id, sink=r.sink, kind=r.kind,
                          priority=r.priority, payload=payload, idempotency_key=r.idempotency_key,
                          attempts=r.attempts)

    def _with_image_metadata(self, items: list[OutboxItem]) -> list[OutboxItem]:
        """Images and originals carry their inspection's identity as object metadata; the
        outbox payload has only the file, so it is looked up here (read-only) unless the
        payload has it."""
        want = {i.inspection_id for i in items if i.kind in FILE_KINDS and "metadata" not in i.payload
                and i.inspection_id}
        if not want:
            return items
        with self.reader.connect() as conn:
            rows = conn.execute(_IMAGE_METADATA, {"ids": json.dumps(sorted(want))}).all()
        meta = {r[0]: {c: ("" if v is None else str(v)) for c, v in zip(IMAGE_METADATA_COLUMNS, r[1:])}
                for r in rows}
        out = []
        for i in items:
            if i.inspection_id in meta and i.kind in FILE_KINDS and "metadata" not in i.payload:
                i = OutboxItem(i.id, i.inspection_id, i.sink, i.kind, i.priority,
                               {**i.payload, "metadata": meta[i.inspection_id]}, i.idempotency_key, i.attempts)
            out.append(i)
        return out

    def renew(self, ids: list[int], lease_s: float) -> None:
        """Extend the lease of rows still being worked on (long uploads, a slow link)."""
        if not ids:
            return
        self._write_one(_RENEW, {"ids": _id_list(ids), "lease": iso_utc(_now() + timedelta(seconds=lease_s))})

    def release_all_claims(self) -> int:
        """Hand back every claim (start-up of the only sync service: their owner is gone)."""
        with self._write_lock, self.writer.begin() as conn:
            n = conn.execute(text("UPDATE outbox SET status = 'pending', next_attempt_at = :now "
                                  "WHERE status = 'in_flight'"), {"now": iso_utc(_now())}).rowcount
            self.commits += 1
        return int(n or 0)

    # --- outcomes (buffered) ----------------------------------------------------------
    def done(self, row_id: int, detail: dict[str, Any] | None, inspection_id: str | None = None) -> None:
        self._add(_Outcome("done", row_id, iso_utc(_now()), detail=detail, inspection_id=inspection_id))

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
                if batch:
                    self._write_one(_OUTCOMES, {"batch": dumps([o.entry() for o in batch])})
            except BaseException:
                with self._buf_lock:  # keep them for the next flush: an outcome is never dropped
                    self._pending[:0] = batch
                    for s in status:
                        self._status.setdefault(s["sink"], s)
                raise
            done = [o.inspection_id for o in batch if o.op == "done" and o.inspection_id]
            if done:
                with self._buf_lock:  # other rows of these inspections may now be deliverable
                    self._hints.extend(done)
                    self._hint_seq += len(done)
            try:
                if status:
                    self._write_one(_SINK_STATUS, {"rows": dumps(status)})
            except BaseException:
                with self._buf_lock:
                    for s in status:
                        self._status.setdefault(s["sink"], s)
                raise
            self._checkpoint_if_due()
        return len(batch)

    def _checkpoint_if_due(self) -> None:
        """Copy the WAL into the database ourselves, at most once a second (PASSIVE: it
        never blocks a writer). SQLite runs an automatic checkpoint inside whichever commit
        takes the WAL past 1,000 pages, and most of those pages are this process's
        bookkeeping; without this, now and then the station's own commit would pay for
        copying and fsyncing them. Kept short, the WAL restarts before it gets there."""
        now = time.monotonic()
        if now - self._checkpointed_at < CHECKPOINT_EVERY_S:
            return
        self._checkpointed_at = now
        with self._write_lock:
            raw = self.writer.raw_connection()
            try:
                raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").close()
            finally:
                raw.close()

    def _write_one(self, sql: str, params: dict[str, Any]) -> None:
        """One statement as its own transaction (the driver is in autocommit mode).

        Not ``BEGIN IMMEDIATE ... COMMIT``: between those calls this thread gives up the
        GIL, and with a dozen upload threads getting it back can take several switch
        intervals, all with the station's write lock held (its commits queue behind it).
        A single statement takes the lock, writes and commits inside one sqlite3 call
        that does not need the GIL; it is atomic on its own.
        """
        with self._write_lock:
            raw = self.writer.raw_connection()
            try:
                raw.driver_connection.execute(sql, params).close()
            finally:
                raw.close()
            self.commits += 1

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
