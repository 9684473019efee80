"""The ``linestation`` command: global options, then one subcommand module each."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

# Each module has register(subparsers); keep the list short and ordered as in --help.
COMMAND_MODULES = (
    "station.commands.inspect_cmd",
    "station.commands.config_cmd",
    "station.commands.audit_cmd",
    "station.commands.ui_cmd",
    "station.commands.dataset_cmd", "station.commands.train_cmd", "station.commands.evaluate_cmd", "station.commands.deploy_cmd", "station.commands.models_cmd", "station.commands.monitor_cmd", "station.commands.event_cmd",  # noqa: E501
    "station.commands.sync_cmd",
    "station.commands.line_cmd",
    "station.commands.batch_cmd",
    "station.commands.batch_report_cmd",  # batch-merge, batch-report (after the shards)
)


def default_data_dir() -> Path:
    env = os.environ.get("LINESTATION_DATA_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "linestation"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="linestation", description="LineStation defect inspection station")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where all state lives (database, images, models, calibration); "
                        "default $LINESTATION_DATA_DIR or ~/.local/share/linestation")
    p.add_argument("-v", "--verbose", action="count", default=0)
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * args.verbose,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_dir = (args.data_dir or default_data_dir()).expanduser()
    return int(args.func(args, data_dir))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
