"""What the sync service has done and what still waits, read from the database alone.

:func:`sync_status` is what ``linestation sync status`` prints and what the station
screen shows; it works whether the service runs or not (it reads the outbox and the
``sink_status`` rows the running service writes every few seconds).
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from station.store.db import DB_FILENAME, make_engine
from station.store.jsonutil import iso_utc, parse_iso_utc

DEAD_LETTERS_SHOWN = 20
STALE_AFTER_S = 30.0  # the service writes its state every few seconds while it runs


def _age_s(ts: str | None, now: datetime) -> float | None:
    return None if not ts else round((now - parse_iso_utc(ts)).total_seconds(), 3)


def sync_status(data_dir: Path | None = None, *, engine: Engine | None = None,
                now: datetime | None = None, dead_letters: int = DEAD_LETTERS_SHOWN) -> dict[str, Any]:
    """Per sink: pending / in flight / delivered / dead counts, the oldest pending row's
    age, the dead letters (newest first, with their reason), the circuit state and last
    error as the service last wrote them, and whether that service looks alive."""
    own = engine is None
    if engine is None:
        if data_dir is None:
            raise ValueError("give data_dir or engine")
        engine = make_engine(Path(data_dir) / DB_FILENAME, writer=False)
    now = now or datetime.now(timezone.utc)
    try:
        with engine.connect() as conn:
            counts = conn.execute(text(
                "SELECT sink, status, COUNT(*), MIN(created_at) FROM outbox GROUP BY sink, status")).all()
            dead = conn.execute(text(
                "SELECT id, sink, kind, idempotency_key, last_error, attempts, next_attempt_at FROM outbox "
                "WHERE status = 'dead' ORDER BY next_attempt_at DESC, id DESC LIMIT :n"), {"n": dead_letters}).all()
            states = conn.execute(text(
                "SELECT sink, state, last_error, last_success_at, updated_at, detail FROM sink_status")).all()
    finally:
        if own:
            engine.dispose()
    sinks: dict[str, dict[str, Any]] = {}

    def entry(name: str) -> dict[str, Any]:
        return sinks.setdefault(name, {
            "pending": 0, "in_flight": 0, "delivered": 0, "dead": 0, "oldest_pending_age_s": None,
            "state": None, "last_error": None, "last_success_at": None, "service_alive": False,
            "updated_at": None, "dead_letters": [],
        })

    for sink, status, n, oldest in counts:
        e = entry(sink)
        key = {"done": "delivered"}.get(status, status)
        e[key] = int(n)
        if status in ("pending", "in_flight"):
            age = _age_s(oldest, now)
            if age is not None and (e["oldest_pending_age_s"] is None or age > e["oldest_pending_age_s"]):
                e["oldest_pending_age_s"] = age
    for row in dead:
        entry(row.sink)["dead_letters"].append({
            "id": row.id, "kind": row.kind, "idempotency_key": row.idempotency_key,
            "reason": row.last_error, "attempts": row.attempts, "at": row.next_attempt_at,
        })
    for sink, state, last_error, last_success, updated, detail in states:
        e = entry(sink)
        info = json.loads(detail) if isinstance(detail, str) else (detail or {})
        age = _age_s(updated, now)
        e.update(state=state, last_error=last_error, last_success_at=last_success, updated_at=updated,
                 service_alive=bool(info.get("running")) and age is not None and age < STALE_AFTER_S)
    total = {k: sum(s[k] for s in sinks.values()) for k in ("pending", "in_flight", "delivered", "dead")}
    return {"at": iso_utc(now), "sinks": dict(sorted(sinks.items())), "total": total}


def format_status(status: dict[str, Any]) -> str:
    """The human table of :func:`sync_status`."""
    lines = [f"{'sink':<14} {'state':<9} {'pending':>8} {'oldest':>9} {'in flight':>9} "
             f"{'delivered':>9} {'dead':>6}  last error"]
    for name, s in status["sinks"].items():
        state = s["state"] or "-"
        if s["state"] and not s["service_alive"]:
            state += "*"
        age = s["oldest_pending_age_s"]
        age_txt = "-" if age is None else (f"{age:.0f}s" if age < 3600 else f"{age / 3600:.1f}h")
        lines.append(f"{name:<14} {state:<9} {s['pending']:>8} {age_txt:>9} {s['in_flight']:>9} "
                     f"{s['delivered']:>9} {s['dead']:>6}  {s['last_error'] or ''}")
    t = status["total"]
    lines.append(f"total: {t['pending']} pending, {t['in_flight']} in flight, {t['delivered']} delivered, "
                 f"{t['dead']} dead")
    if any(s["state"] and not s["service_alive"] for s in status["sinks"].values()):
        lines.append("* the sync service is not running (state as it last reported)")
    for name, s in status["sinks"].items():
        for d in s["dead_letters"]:
            lines.append(f"dead {name} #{d['id']} {d['idempotency_key']}: {d['reason']}")
    return "\n".join(lines)
