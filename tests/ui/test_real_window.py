"""A real window on a real X server: the screenshot script under an Xvfb this test starts."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import UI_SIM, copy_template

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def xvfb_display() -> Iterator[str]:
    """An Xvfb at 1920x1080 on a display number it picks itself (-displayfd)."""
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb is not installed (.ci/run installs it)")
    r, w = os.pipe()
    proc = subprocess.Popen([exe, "-displayfd", str(w), "-screen", "0", "1920x1080x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    try:
        with os.fdopen(r) as f:
            number = f.readline().strip()
        assert number.isdigit(), "Xvfb did not report its display"
        yield f":{number}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_screenshots_come_from_a_real_x_window(tmp_path, ui_template, xvfb_display):
    import cv2

    cfg = tmp_path / "station.yaml"
    cfg.write_text(yaml.safe_dump(UI_SIM))
    data_dir = copy_template(ui_template, tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env.update(DISPLAY=xvfb_display, QT_QPA_PLATFORM="xcb")
    out = tmp_path / "shots"
    r = subprocess.run([sys.executable, "-m", "station.ui.screenshots", str(out), "--config", str(cfg),
                        "--data-dir", str(data_dir), "--only", "sign-in,operator-check-capture"],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    for name in ("sign-in", "operator-check-capture"):
        img = cv2.imread(str(out / f"{name}.png"))
        assert img is not None and img.shape == (1080, 1920, 3), name
        assert img.std() > 10, f"{name} is blank"
    # the CHECK CAPTURE banner (Okabe-Ito sky blue #56B4E9) is on screen, top right
    shot = cv2.imread(str(out / "operator-check-capture.png"))
    banner = shot[150:350, 1300:1900].reshape(-1, 3)
    sky_blue = np.all(np.abs(banner.astype(int) - [0xE9, 0xB4, 0x56]) < 12, axis=1)
    assert sky_blue.mean() > 0.3
    # the offscreen platform is refused: the screenshots must come from a real window
    env["QT_QPA_PLATFORM"] = "offscreen"
    r = subprocess.run([sys.executable, "-m", "station.ui.screenshots", str(tmp_path / "x"), "--config", str(cfg),
                        "--data-dir", str(data_dir)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "real window" in r.stderr


def test_linestation_run_bootstraps_behind_its_dialog_and_stops_cleanly_on_sigterm(tmp_path, xvfb_display):
    """Production command on a fresh data dir: calibrate + train behind the progress dialog,
    the window opens, SIGTERM closes it and the process exits 0 with the data dir released."""
    import signal
    import time

    cfg = tmp_path / "station.yaml"
    cfg.write_text(yaml.safe_dump(UI_SIM))
    data_dir = tmp_path / "fresh"
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env.update(DISPLAY=xvfb_display, QT_QPA_PLATFORM="xcb")
    proc = subprocess.Popen([sys.executable, "-m", "station.cli", "--data-dir", str(data_dir), "run",
                             "--config", str(cfg)], env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not list((data_dir / "models").glob("*/model*")):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        time.sleep(3)  # the window is up once the model exists and the cycle is armed
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err[-2000:]
    from station.store.station_store import StationStore

    store = StationStore(data_dir)  # takes the writer lock: the window let it go
    try:
        assert store.audit_verify().ok
    finally:
        store.close()
