"""The hash-chained audit log.

Entry ``n`` stores ``hash_n = sha256(hash_{n-1} + canonical_json(seq, at, actor, action,
subject, payload))`` with ``hash_0`` = 64 zeros. Changing, inserting or deleting any entry
breaks every link after it, so :func:`verify` names the first entry that no longer fits.
(Cutting entries off the *end* leaves a shorter valid chain; the store cross-checks that
every inspection still has its entry, and shipping the head hash off the station closes
the gap for good.)

:func:`append` runs inside the caller's transaction, so an audit entry commits or rolls
back together with what it describes. ``seq`` is ``max(seq) + 1`` read under the write
lock (``BEGIN IMMEDIATE``) and is the primary key: two writers can never fork the chain.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.orm import Session

from station.store.jsonutil import canonical, iso_utc, to_jsonable
from station.store.schema import AuditEntry

GENESIS_HASH = "0" * 64
_table = AuditEntry.__table__


@dataclass(frozen=True)
class AuditReport:
    """The outcome of checking the chain: ``ok`` or the first entry that breaks it."""

    ok: bool
    count: int
    first_broken_seq: int | None = None
    reason: str = ""
    head_seq: int | None = None
    head_hash: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def entry_hash(
    prev_hash: str, seq: int, at: str, actor: str, action: str, subject: str, payload: Any
) -> str:
    body = canonical(
        {"seq": seq, "at": at, "actor": actor, "action": action, "subject": subject, "payload": payload}
    )
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def append(
    session: Session | Connection,
    *,
    actor: str,
    action: str,
    subject: str = "",
    payload: Any = None,
    at: datetime | str | None = None,
) -> tuple[int, str]:
    """Add one entry in the caller's (write) transaction; return ``(seq, hash)``."""
    last = session.execute(
        select(_table.c.seq, _table.c.hash).order_by(_table.c.seq.desc()).limit(1)
    ).first()
    seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS_HASH)
    at_text = at if isinstance(at, str) else iso_utc(at)
    payload = to_jsonable(payload)
    digest = entry_hash(prev, seq, at_text, actor, action, subject, payload)
    session.execute(
        insert(_table),
        [{
            "seq": seq, "at": at_text, "actor": actor, "action": action, "subject": subject,
            "payload": payload, "prev_hash": prev, "hash": digest,
        }],
    )
    return seq, digest


def verify(engine: Engine | Connection) -> AuditReport:
    """Walk the whole chain in ``seq`` order and recompute every hash."""
    if isinstance(engine, Engine):
        with engine.connect() as conn:
            return _verify(conn)
    return _verify(engine)


def _verify(conn: Connection) -> AuditReport:
    # Raw text: hash what is stored, not what a type decorator would make of it.
    rows = conn.exec_driver_sql(
        "SELECT seq, at, actor, action, subject, payload, prev_hash, hash FROM audit_log ORDER BY seq"
    )
    prev_seq, prev_hash, count = 0, GENESIS_HASH, 0

    def broken(seq: int, reason: str) -> AuditReport:
        return AuditReport(False, count, seq, reason, prev_seq or None, prev_hash if prev_seq else None)

    for seq, at, actor, action, subject, payload_text, stored_prev, stored_hash in rows:
        if seq != prev_seq + 1:
            missing = prev_seq + 1
            what = f"entries {missing}..{seq - 1} are" if seq - 1 > missing else f"entry {missing} is"
            return broken(missing, f"{what} missing (the chain jumps from {prev_seq} to {seq})")
        if stored_prev != prev_hash:
            return broken(seq, f"entry {seq} does not link to entry {prev_seq} (prev_hash differs)")
        try:
            payload = None if payload_text is None else json.loads(payload_text)
        except ValueError:
            return broken(seq, f"entry {seq} payload is not valid JSON")
        if entry_hash(prev_hash, seq, at, actor, action, subject, payload) != stored_hash:
            return broken(seq, f"entry {seq} was altered (its content does not match its hash)")
        prev_seq, prev_hash = seq, stored_hash
        count += 1
    return AuditReport(True, count, None, "", prev_seq or None, prev_hash if prev_seq else None)
