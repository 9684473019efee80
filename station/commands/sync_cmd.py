"""``linestation sync``: the background sync service, its status and its dead letters.

    linestation sync --config FILE            run until SIGTERM / SIGINT (clean shutdown)
    linestation sync status [--json]          pending / delivered / dead per sink, last errors
    linestation sync retry-dead [--sink S]    put dead letters back in the queue
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from station.commands.common import EXIT_FAIL, EXIT_OK, load_config_or_report


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sync", help="deliver the outbox to S3, Step Functions, SNS and the MES")
    p.add_argument("--config", type=Path, help="station config (its 'sync' section enables the sinks)")
    p.add_argument("--stop-timeout", type=float, default=60.0,
                   help="seconds to let deliveries in progress finish on SIGTERM")
    p.set_defaults(func=run)
    ssub = p.add_subparsers(dest="sync_command")
    st = ssub.add_parser("status", help="what waits, what was delivered, dead letters, last errors")
    st.add_argument("--json", action="store_true", help="one JSON object")
    st.set_defaults(func=status)
    rd = ssub.add_parser("retry-dead", help="put dead letters back in the queue (after fixing the cause)")
    rd.add_argument("--sink", default=None, help="only this sink's dead letters")
    rd.set_defaults(func=retry_dead)


def _no_db(data_dir: Path) -> bool:
    if (data_dir / "station.db").exists():
        return False
    print(f"no station database in {data_dir}", file=sys.stderr)
    return True


def run(args: argparse.Namespace, data_dir: Path) -> int:
    from cloudsync.service import ServiceLocked, open_service

    if args.config is None:
        print("linestation sync: --config FILE is required to run the service "
              "(or use 'sync status' / 'sync retry-dead')", file=sys.stderr)
        return EXIT_FAIL
    cfg = load_config_or_report(args.config)
    if cfg is None or _no_db(data_dir):
        return EXIT_FAIL
    try:
        service = open_service(cfg, data_dir)
    except (ServiceLocked, FileNotFoundError, ValueError) as exc:
        print(f"sync cannot start: {exc}", file=sys.stderr)
        return EXIT_FAIL
    engine = service.engine
    previous = {s: signal.signal(s, lambda *_: engine.request_stop()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        service.start()
        names = ", ".join(sorted(engine.sinks)) or "none (queue only)"
        print(f"sync running on {data_dir}: sinks {names}", file=sys.stderr, flush=True)
        while not engine.wait(1.0):
            pass
        print("sync stopping: finishing deliveries in progress", file=sys.stderr, flush=True)
    finally:
        service.stop(args.stop_timeout)
        for s, h in previous.items():
            signal.signal(s, h)
    print("sync stopped", file=sys.stderr, flush=True)
    return EXIT_OK


def status(args: argparse.Namespace, data_dir: Path) -> int:
    from cloudsync.status import format_status, sync_status

    if _no_db(data_dir):
        return EXIT_FAIL
    st = sync_status(data_dir)
    if args.json:
        print(json.dumps(st, separators=(",", ":")))
    else:
        print(format_status(st))
    return EXIT_OK


def retry_dead(args: argparse.Namespace, data_dir: Path) -> int:
    from cloudsync.outbox_queue import OutboxQueue

    if _no_db(data_dir):
        return EXIT_FAIL
    queue = OutboxQueue(data_dir)
    try:
        n = queue.retry_dead(args.sink, actor="cli:sync retry-dead")
    finally:
        queue.close()
    print(f"{n} dead letter(s){' of ' + args.sink if args.sink else ''} queued again")
    return EXIT_OK
