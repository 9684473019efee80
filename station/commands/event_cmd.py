"""``linestation event record KIND [--note TEXT]`` / ``event list``: changes on the line.

A line event (new supplier, tooling change, part revision ...) is stored in ``line_events``
and in the audit log in one transaction; ``linestation monitor`` recommends retraining
after one.
"""
from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

from station.commands.common import EXIT_FAIL, EXIT_OK

KINDS = ("supplier", "tooling", "part_revision", "material", "maintenance", "process", "other")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("event", help="record a change on the line (triggers retraining advice)")
    esub = p.add_subparsers(dest="event_command", required=True)
    rec = esub.add_parser("record", help="record one line event")
    rec.add_argument("kind", choices=KINDS)
    rec.add_argument("--note", default="", help="what changed, e.g. 'supplier B, lot 42'")
    rec.add_argument("--user", default=None, help="who records it; default the login name")
    rec.set_defaults(func=run_record)
    ls = esub.add_parser("list", help="recorded line events, oldest first")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)


def record_event(store, kind: str, note: str, username: str) -> int:
    """Insert the event and its audit entry in one transaction; return the event id."""
    from sqlalchemy import insert

    from station.store import audit as audit_log
    from station.store.schema import LineEvent

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not re.match(r"^[A-Za-z0-9_.@-]{1,64}$", username):
        raise ValueError(f"bad user name {username!r}")
    at = datetime.now(timezone.utc)
    with store.engine.begin() as conn:
        event_id = conn.execute(insert(LineEvent).values(kind=kind, note=note, username=username, at=at)
                                .returning(LineEvent.id)).scalar_one()
        audit_log.append(conn, actor=f"user:{username}", action="line.event", subject=f"line-event:{event_id}",
                         payload={"kind": kind, "note": note})
    return int(event_id)


def run_record(args: argparse.Namespace, data_dir: Path) -> int:
    from station.store.errors import StoreError
    from station.store.station_store import StationStore

    try:
        store = StationStore(data_dir, recover=False)
    except StoreError as e:
        print(f"cannot open the station store: {e}", file=sys.stderr)
        return EXIT_FAIL
    try:
        event_id = record_event(store, args.kind, args.note, args.user or getpass.getuser())
    except ValueError as e:
        print(f"event not recorded: {e}", file=sys.stderr)
        return EXIT_FAIL
    finally:
        store.close()
    print(f"line event {event_id} recorded: {args.kind}" + (f" ({args.note})" if args.note else ""))
    return EXIT_OK


def run_list(args: argparse.Namespace, data_dir: Path) -> int:
    from sqlalchemy import select

    from station.store.db import make_engine
    from station.store.schema import LineEvent

    db = data_dir / "station.db"
    if not db.exists():
        print(f"no station database in {data_dir}", file=sys.stderr)
        return EXIT_FAIL
    engine = make_engine(db, writer=False)
    try:
        with engine.connect() as conn:
            rows = [{"id": i, "kind": k, "note": n, "user": u, "at": a.isoformat()}
                    for i, k, n, u, a in conn.execute(select(LineEvent.id, LineEvent.kind, LineEvent.note,
                                                             LineEvent.username, LineEvent.at).order_by(LineEvent.id))]
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(rows))
    for r in [] if args.json else rows:
        print(f"{r['id']:>4} {r['at']} {r['kind']:<14} {r['user']:<12} {r['note']}")
    return EXIT_OK
