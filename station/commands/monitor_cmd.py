"""``linestation monitor [--config FILE] [--json]``: drift status, alarms, retraining advice."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from station.commands.common import EXIT_FAIL, EXIT_OK, load_config_or_report


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("monitor", help="capture drift, score drift, review disagreement, retraining trigger")
    p.add_argument("--config", type=Path, default=None, help="station config with lifecycle.monitor / retrain")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, data_dir: Path) -> int:
    from station.config import LifecycleConfig
    from station.monitor.status import monitor_status

    life = LifecycleConfig()
    if args.config is not None:
        cfg = load_config_or_report(args.config)
        if cfg is None:
            return EXIT_FAIL
        life = cfg.lifecycle
    try:
        status = monitor_status(data_dir, life.monitor, life.retrain)
    except FileNotFoundError as e:
        print(str(e), file=sys.stderr)
        return EXIT_FAIL
    if args.json:
        print(json.dumps(status))
        return EXIT_OK
    print(f"status: {status['status'].upper()}   active model: {status['active_model'] or 'none'}")
    cap = status["capture"]
    for name in ("brightness", "focus", "position"):
        c = cap.get(name)
        if c:
            last = "n/a" if c["last"] is None else f"{c['last']:.4g}"
            print(f"  {name:<11} n={c['n']:<4} centre {c['centre']:.4g} sigma {c['sigma']:.3g} last {last}"
                  f"  {' '.join(c.get('alarms', [])) or 'in control'}")
    if cap.get("note"):
        print(f"  capture: {cap['note']}")
    sd = status["score_drift"]
    if "psi" in sd:
        print(f"  scores     PSI {sd['psi']:.3f}  KS {sd['ks']:.3f}  ({sd['n_recent']} recent vs {sd['reference']})")
    elif sd.get("note"):
        print(f"  scores: {sd['note']}")
    rv = status["review"]
    rate = "n/a" if rv["rate"] is None else f"{rv['rate']:.0%}"
    print(f"  reviews    {rv['reviewed']} reviewed, disagreement {rate}")
    for a in status["alarms"]:
        print(f"ALARM {a['message']}")
    r = status["retrain"]
    print("retraining recommended: " + ("; ".join(r["reasons"]) if r["recommended"] else "no"))
    return EXIT_OK
