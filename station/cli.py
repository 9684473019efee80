"""The ``linestation`` command."""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from station.capture.base import CaptureError
from station.config import ConfigError, load_config

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def default_data_dir() -> Path:
    env = os.environ.get("LINESTATION_DATA_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "linestation"


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="linestation", description="LineStation defect inspection station")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where all state lives (database, images, models, calibration); "
                        "default $LINESTATION_DATA_DIR or ~/.local/share/linestation")
    p.add_argument("-v", "--verbose", action="count", default=0)
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate-config", help="check a config file without starting anything")
    v.add_argument("file", type=Path)

    i = sub.add_parser("inspect", help="run N triggered inspections headless")
    i.add_argument("--config", type=Path, required=True)
    i.add_argument("--count", type=int, default=10, help="number of parts (0 = until stopped)")
    i.add_argument("--json", action="store_true", help="one JSON object per inspection on stdout")
    i.add_argument("--lot", default=None, help="lot id for the parts (default: the config's)")

    a = sub.add_parser("audit", help="audit log tools")
    asub = a.add_subparsers(dest="audit_command", required=True)
    asub.add_parser("verify", help="check the hash chain of the audit log")
    return p


def _cmd_validate(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.file)
    except ConfigError as exc:
        for issue in exc.issues:
            print(str(issue), file=sys.stderr)
        print(f"{args.file}: {len(exc.issues)} error(s)", file=sys.stderr)
        return EXIT_FAIL
    print(f"{args.file}: OK (schema_version {cfg.schema_version}, camera {cfg.camera.type}, "
          f"detector {cfg.detector.type}, config hash {cfg.config_hash()})")
    return EXIT_OK


def _cmd_inspect(args: argparse.Namespace, data_dir: Path) -> int:
    from station.inspect.bootstrap import BootstrapError
    from station.runtime import StationRuntime, print_human
    from station.store.errors import StoreError

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        for issue in exc.issues:
            print(str(issue), file=sys.stderr)
        return EXIT_FAIL
    progress = (lambda msg: print(msg, file=sys.stderr, flush=True))
    try:
        runtime = StationRuntime.open(cfg, data_dir, progress=progress)
    except (BootstrapError, StoreError, CaptureError) as exc:
        print(f"station cannot start: {exc}", file=sys.stderr)
        return EXIT_FAIL
    # SIGTERM / Ctrl-C: finish the inspection in progress and stop cleanly.
    previous = {s: signal.signal(s, lambda *_: runtime.cycle.stop()) for s in (signal.SIGINT, signal.SIGTERM)}
    status = EXIT_OK
    try:
        for outcome in runtime.run(count=args.count or None, lot=args.lot):
            if args.json:
                print(json.dumps(outcome.to_json(), separators=(",", ":")), flush=True)
            else:
                print_human(outcome)
        if runtime.cycle.fault_reason:
            print(f"station faulted: {runtime.cycle.fault_reason}", file=sys.stderr)
            status = EXIT_FAIL
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the final flush quiet
    except StoreError as exc:  # the record cannot be written: the station must stop
        print(f"station stopped: {exc}", file=sys.stderr)
        status = EXIT_FAIL
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        runtime.close()
    return status


def _cmd_audit(args: argparse.Namespace, data_dir: Path) -> int:
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


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * args.verbose,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_dir = (args.data_dir or default_data_dir()).expanduser()
    if args.command == "validate-config":
        return _cmd_validate(args)
    if args.command == "inspect":
        return _cmd_inspect(args, data_dir)
    if args.command == "audit":
        return _cmd_audit(args, data_dir)
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
