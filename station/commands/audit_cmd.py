"""``linestation audit verify``: check the hash chain of the audit log."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from station.commands.common import EXIT_FAIL, EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="audit log tools")
    asub = p.add_subparsers(dest="audit_command", required=True)
    v = asub.add_parser("verify", help="check the hash chain of the audit log")
    v.set_defaults(func=verify)


def verify(args: argparse.Namespace, data_dir: Path) -> int:
    from station.store.station_store import StationStore

    if not (data_dir / "station.db").exists():
        print(f"no station database in {data_dir}", file=sys.stderr)
        return EXIT_FAIL
    store = StationStore(data_dir, recover=False)
    try:
        report = store.audit_verify()
    finally:
        store.close()
    if report.ok:
        print(f"audit chain intact: {report.count} entries")
        return EXIT_OK
    print(f"audit chain BROKEN at entry {report.first_broken_seq}: {report.reason}", file=sys.stderr)
    return EXIT_FAIL
