"""``linestation demo`` / ``run`` without a display, and with a bad config file."""
from __future__ import annotations

import os
import subprocess
import sys


def _cli(tmp_path, *args: str, display: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    return subprocess.run([sys.executable, "-m", "station.cli", "--data-dir", str(tmp_path / "d"), *args],
                          env=env, capture_output=True, text=True, timeout=60)


def test_demo_without_a_display_explains_and_starts_nothing(tmp_path):
    r = _cli(tmp_path, "demo")
    assert r.returncode == 1
    assert "no display" in r.stderr and "linestation inspect --config" in r.stderr
    assert not (tmp_path / "d").exists(), "nothing may be created when the window cannot open"


def test_run_reports_every_config_error_before_opening_anything(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\ncamera: {type: sim}\nui:\n  idle_signout_min: -3\n  kiosk_mode: true\n")
    r = _cli(tmp_path, "run", "--config", str(bad))
    assert r.returncode == 1
    assert "ui.idle_signout_min" in r.stderr and "ui.kiosk_mode" in r.stderr and "2 error(s)" in r.stderr
    assert not (tmp_path / "d").exists()


def test_cli_help_works_without_qt_being_imported(tmp_path):
    code = ("import sys; from station.cli import build_parser; build_parser(); "
            "print('PySide6' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "False", r.stderr
