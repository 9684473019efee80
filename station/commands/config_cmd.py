"""``linestation validate-config FILE``."""
from __future__ import annotations

import argparse
from pathlib import Path

from station.commands.common import EXIT_FAIL, EXIT_OK, load_config_or_report


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate-config", help="check a config file without starting anything")
    p.add_argument("file", type=Path)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, data_dir: Path) -> int:
    cfg = load_config_or_report(args.file)
    if cfg is None:
        return EXIT_FAIL
    print(f"{args.file}: OK (schema_version {cfg.schema_version}, camera {cfg.camera.type}, "
          f"detector {cfg.detector.type}, config hash {cfg.config_hash()})")
    return EXIT_OK
