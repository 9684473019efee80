"""Helpers shared by the subcommands."""
from __future__ import annotations

import sys
from pathlib import Path

from station.config import ConfigError, LineStationConfig, load_config

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def load_config_or_report(path: Path) -> LineStationConfig | None:
    """The validated config, or None after printing every problem to stderr."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(str(issue), file=sys.stderr)
        print(f"{path}: {len(exc.issues)} error(s)", file=sys.stderr)
        return None


def progress_to_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
