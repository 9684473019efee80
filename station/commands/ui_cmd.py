"""``linestation demo`` and ``linestation run --config FILE``: the station's window.

Qt is imported only when one of these runs, so the rest of the CLI works on a machine
without a display. ``demo`` uses the packaged demo config (simulated camera, local model
trained on first run, sync queued in the outbox) with ``ui.demo_mode`` switched on, which
offers password-less demo operator / supervisor / technician sign-in; the first run still
asks for a real admin account (there are no built-in passwords).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from station.commands.common import EXIT_FAIL, load_config_or_report

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "resources" / "demo.yaml"


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("demo", help="open the station window on the simulated camera (demo mode)")
    d.add_argument("--config", type=Path, default=None,
                   help=f"a config to use instead of the packaged demo ({DEMO_CONFIG.name})")
    d.set_defaults(func=demo)
    r = sub.add_parser("run", help="open the station window (production)")
    r.add_argument("--config", type=Path, required=True)
    r.set_defaults(func=run)


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or os.environ.get("QT_QPA_PLATFORM") in ("offscreen", "minimal", "vnc"))


def _open(cfg_path: Path, data_dir: Path, *, demo_mode: bool) -> int:
    cfg = load_config_or_report(cfg_path)
    if cfg is None:
        return EXIT_FAIL
    if not has_display():
        print("linestation: no display (neither DISPLAY nor WAYLAND_DISPLAY is set); the headless "
              f"station runs with `linestation inspect --config {cfg_path}`", file=sys.stderr)
        return EXIT_FAIL
    if demo_mode:
        cfg = cfg.model_copy(update={"ui": cfg.ui.model_copy(update={"demo_mode": True})})
    from station.ui.app import run_station  # Qt only from here on

    return run_station(cfg, data_dir)


def demo(args: argparse.Namespace, data_dir: Path) -> int:
    return _open(args.config or DEMO_CONFIG, data_dir, demo_mode=True)


def run(args: argparse.Namespace, data_dir: Path) -> int:
    return _open(args.config, data_dir, demo_mode=False)
