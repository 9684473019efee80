"""``linestation inspect --config FILE --count N [--json]``: headless triggered inspections."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from station.capture.base import CaptureError
from station.commands.common import EXIT_FAIL, EXIT_OK, load_config_or_report, progress_to_stderr


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="run N triggered inspections headless")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--count", type=int, default=10, help="number of parts (0 = until stopped)")
    p.add_argument("--json", action="store_true", help="one JSON object per inspection on stdout")
    p.add_argument("--lot", default=None, help="lot id for the parts (default: the config's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, data_dir: Path) -> int:
    from station.inspect.bootstrap import BootstrapError
    from station.runtime import StationRuntime, print_human, print_summary
    from station.store.errors import StoreError

    cfg = load_config_or_report(args.config)
    if cfg is None:
        return EXIT_FAIL
    try:
        runtime = StationRuntime.open(cfg, data_dir, progress=progress_to_stderr)
    except (BootstrapError, StoreError, CaptureError) as exc:
        print(f"station cannot start: {exc}", file=sys.stderr)
        return EXIT_FAIL
    # SIGTERM / Ctrl-C: finish the inspection in progress and stop cleanly.
    previous = {s: signal.signal(s, lambda *_: runtime.cycle.stop()) for s in (signal.SIGINT, signal.SIGTERM)}
    status = EXIT_OK
    outcomes = []
    try:
        for outcome in runtime.run(count=args.count or None, lot=args.lot):
            outcomes.append(outcome)
            if args.json:
                print(json.dumps(outcome.to_json(), separators=(",", ":")), flush=True)
            else:
                print_human(outcome)
        if runtime.cycle.fault_reason:
            print(f"station faulted: {runtime.cycle.fault_reason}", file=sys.stderr)
            status = EXIT_FAIL
        print_summary(outcomes, runtime.store, stream=sys.stderr)
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
