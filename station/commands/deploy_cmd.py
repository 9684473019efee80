"""``linestation deploy MODEL [--shadow]`` through the evaluation gate; ``deploy --rollback``."""
from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from station.commands.common import EXIT_FAIL, EXIT_OK, load_config_or_report


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deploy", help="make a model active (or shadow) if it passes the gate; or roll back")
    p.add_argument("model", nargs="?", help="model id")
    p.add_argument("--shadow", action="store_true", help="run it beside the active model, results recorded only")
    p.add_argument("--rollback", action="store_true", help="make the model active before the last switch active again")
    p.add_argument("--dataset", default=None, help="gate dataset NAME@VERSION (default: the model's training dataset)")
    p.add_argument("--config", type=Path, default=None, help="station config with the lifecycle.gate limits")
    p.add_argument("--user", default=None, help="who deploys (audit log); default the login name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, data_dir: Path) -> int:
    from station.config import GateConfig
    from station.datasets.store import DatasetStore
    from station.detect.registry import ModelRegistry
    from station.lifecycle.deploy import DeployError, deploy, rollback
    from station.lifecycle.progress import ProgressBar
    from station.store.errors import StoreError
    from station.store.station_store import StationStore

    if args.rollback == bool(args.model):
        print("give a MODEL to deploy, or --rollback (not both)", file=sys.stderr)
        return EXIT_FAIL
    gate = GateConfig()
    if args.config is not None:
        cfg = load_config_or_report(args.config)
        if cfg is None:
            return EXIT_FAIL
        gate = cfg.lifecycle.gate
    actor = f"user:{args.user or getpass.getuser()}"
    registry = ModelRegistry(data_dir / "models")
    try:
        store = StationStore(data_dir, recover=False)
    except StoreError as e:
        print(f"cannot open the station store for the audit log: {e}", file=sys.stderr)
        return EXIT_FAIL
    bar = ProgressBar()
    try:
        if args.rollback:
            restored, replaced = rollback(registry, store, actor=actor)
            msg = {"deployed": True, "pointer": "active", "model": restored, "previous": replaced, "rollback": True}
            print(json.dumps(msg) if args.json else f"rolled back: {restored} is active again (was {replaced})")
            return EXIT_OK
        out = deploy(registry, DatasetStore(data_dir / "datasets"), store, args.model, gate, shadow=args.shadow,
                     dataset_ref=args.dataset, actor=actor, progress=lambda d, t: bar("evaluating", d, t))
    except DeployError as e:
        print(f"deploy refused: {e}", file=sys.stderr)
        return EXIT_FAIL
    finally:
        store.close()
    if args.json:
        print(json.dumps(out.to_json()))
    elif out.deployed:
        print(f"{out.model} is now {out.pointer} (was {out.previous or 'none'}); gate passed on {out.dataset}")
    if not out.deployed:
        print(f"deploy refused: {out.model} did not pass the gate on {out.dataset}:", file=sys.stderr)
        for r in out.gate.reasons:
            print(f"  - {r}", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK
