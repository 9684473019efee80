"""``linestation line --config FILE [--json]``: the station driven only by the line (headless).

Opens the station, starts the Modbus TCP / OPC UA servers of the config's ``line`` section
and serves the PLC / MES until SIGTERM or Ctrl-C; one line per result the line was given
(``--json``: one JSON object). The inspection in progress finishes before it exits.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from station.capture.base import CaptureError
from station.commands.common import EXIT_FAIL, EXIT_OK, load_config_or_report, progress_to_stderr


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("line", help="run the station driven by the PLC / MES (Modbus TCP, OPC UA) until stopped")
    p.add_argument("--config", type=Path, required=True, help="a config with a 'line' section")
    p.add_argument("--json", action="store_true", help="one JSON object per result on stdout")
    p.set_defaults(func=run)


def _printer(as_json: bool):
    lock = threading.Lock()
    last = {"seq": 0}

    def show(status) -> None:
        r = status.last_result
        with lock:
            if r is None or r.seq == last["seq"]:
                return
            last["seq"] = r.seq
            if as_json:
                print(json.dumps({"seq": r.seq, "code": int(r.code), "code_name": r.code.name, "part_id": r.part_id,
                                  "lot": r.lot, "recipe": r.recipe, "result_id": r.result_id, "verdict": r.verdict,
                                  "decision": r.decision, "confidence": r.confidence, "message": r.message,
                                  "latency_ms": r.latency_ms}, separators=(",", ":")), flush=True)
            else:
                print(f"{r.part_id or '-':>16}  {r.code.name:<14} {r.recipe:<12} {r.latency_ms:7.1f} ms  {r.message}",
                      flush=True)

    return show


def run(args: argparse.Namespace, data_dir: Path) -> int:
    from station.inspect.bootstrap import BootstrapError
    from station.runtime import StationRuntime
    from station.store.errors import StoreError

    cfg = load_config_or_report(args.config)
    if cfg is None:
        return EXIT_FAIL
    if cfg.line is None:
        print(f"{args.config}: no 'line' section: configure line.modbus and/or line.opcua "
              "(see docs/line-handshake.md)", file=sys.stderr)
        return EXIT_FAIL
    try:
        runtime = StationRuntime.open(cfg, data_dir, progress=progress_to_stderr)
    except (BootstrapError, StoreError, CaptureError, OSError) as exc:
        print(f"station cannot start: {exc}", file=sys.stderr)
        return EXIT_FAIL
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    handshake = runtime.line.handshake
    show = _printer(args.json)
    handshake.add_listener(show)
    try:
        links = "; ".join(f"{k}: {v}" for k, v in handshake.status().links.items())
        print(f"line handshake ready ({links}); recipe {handshake.recipes.active}; "
              f"result timeout {cfg.line.result_timeout_ms} ms", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            if runtime.cycle.fault_reason:
                print(f"station faulted: {runtime.cycle.fault_reason}", file=sys.stderr)
                return EXIT_FAIL
        print("stopping: the inspection in progress finishes first", file=sys.stderr, flush=True)
        return EXIT_OK
    finally:
        handshake.remove_listener(show)
        for s, h in previous.items():
            signal.signal(s, h)
        runtime.close()
