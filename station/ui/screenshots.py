"""Screenshots of every station screen, from a real window on a real X server.

    xvfb-run -a -s "-screen 0 1920x1080x24" python -m station.ui.screenshots docs/screenshots

Opens the station on the demo config (simulated camera; a fresh temp data dir unless
``--data-dir``), creates an admin with a random password, runs real inspections and saves
1920x1080 PNGs: the first-run and sign-in screens, the operator screen with PASS, with
DEFECT + heatmap, with CHECK CAPTURE and held by an interlock (LINE HELD), the health page
and every other page registered in :data:`station.ui.pages.PAGES` (the supervisor's and
technician's pages). Then a second station on the X-ray demo config (simulated 16-bit
detector, its watched folder in the temp dir): the operator screen with a radiograph shown
through the recipe's first window / level preset and the heatmap.
Refuses to run on the offscreen platform: the point is a real window.
"""
from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEventLoop
from PySide6.QtWidgets import QApplication

from station.config import load_config
from station.runtime import StationRuntime
from station.ui.app import build_context
from station.ui.main_window import QtMainWindow

SIZE = (1920, 1080)
DEMO_CONFIG = Path(__file__).resolve().parents[2] / "resources" / "demo.yaml"
XRAY_CONFIG = Path(__file__).resolve().parents[2] / "resources" / "xray-demo.yaml"
INTERLOCK_REASON = "interlock open (door / shutter, from modbus)"  # as station.line's handshake words it


def pump(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.01)


def wait_for(cond: Callable[[], bool], timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        if cond():
            return True
        time.sleep(0.01)
    return False


class Shooter:
    def __init__(self, window: QtMainWindow, out: Path) -> None:
        self.window, self.out = window, out
        self.saved: list[Path] = []

    def shoot(self, name: str, settle: float = 0.4) -> Path:
        pump(settle)
        screen = self.window.screen()
        geo = screen.geometry()
        if geo.width() >= SIZE[0] and geo.height() >= SIZE[1]:
            pix = screen.grabWindow(self.window.winId())  # what the X server shows
        else:  # a small X screen (xvfb-run's default): render the real window instead
            pix = self.window.grab()
        path = self.out / f"{name}.png"
        if not pix.save(str(path)):
            raise OSError(f"cannot write {path}")
        self.saved.append(path)
        print(f"saved {path} ({pix.width()}x{pix.height()})", flush=True)
        return path


def inspect_until(window: QtMainWindow, decisions: set[str], tries: int = 60) -> str | None:
    """Trigger parts until one gets a decision in ``decisions`` (shown on the banner)."""
    op = window.pages["operator"]
    for _ in range(tries):
        n = len(op.latency_ms)
        op.trigger_once()
        if not wait_for(lambda: len(op.latency_ms) > n, 10):
            return None
        if op.banner.decision in decisions:
            wait_for(lambda: op.live.frames_set > 0 and window.ctx.line.latest.seq == op._seq, 3)
            return op.banner.decision
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--config", type=Path, default=DEMO_CONFIG)
    p.add_argument("--data-dir", type=Path, default=None, help="default: a fresh temp dir")
    p.add_argument("--only", default="", help="comma-separated screen names")
    p.add_argument("--xray-config", type=Path, default=XRAY_CONFIG, help="the X-ray station's config")
    args = p.parse_args(argv)

    app = QApplication.instance() or QApplication(sys.argv[:1])
    if app.platformName() in ("offscreen", "minimal"):
        print("screenshots need a real window: run under Xvfb (xvfb-run -a ...), not offscreen",
              file=sys.stderr)
        return 2
    only = {s for s in args.only.split(",") if s}
    cfg = load_config(args.config)
    cfg = cfg.model_copy(update={"ui": cfg.ui.model_copy(update={"demo_mode": True, "idle_signout_min": 600})})
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="linestation-shots-") as tmp:
        data_dir = args.data_dir or Path(tmp)
        print(f"opening the station in {data_dir} ...", flush=True)
        rt = StationRuntime.open(cfg, data_dir, progress=lambda m: print(m, flush=True))
        ctx = build_context(rt)
        win = QtMainWindow(ctx)
        win.setGeometry(0, 0, *SIZE)
        win.setFixedSize(*SIZE)
        win.show()
        wait_for(win.isVisible)
        shots = Shooter(win, args.out)

        def want(name: str) -> bool:
            return not only or name in only

        try:
            admin_secret = None
            if ctx.users.needs_first_admin():
                if want("first-run"):
                    shots.shoot("first-run")
                admin_secret = secrets.token_urlsafe(16)
                ctx.users.create_first_admin("admin", admin_secret, "Station admin")
            win.show_entry_screen()
            win.sign_in_screen.username.setText("admin")
            win.sign_in_screen.secret.setText("••••")
            if want("sign-in"):
                shots.shoot("sign-in")
            if admin_secret is not None:  # the admin sees every page
                win.sign_in_screen.signed_in.emit(ctx.users.sign_in("admin", admin_secret))
            else:  # a data dir with an admin we do not know: the demo technician
                ctx.users.ensure_demo_users()
                win.sign_in_screen.demo_sign_in("technician")
            wait_for(lambda: "operator" in win.pages)
            cases = [("operator-pass", {"pass"}, False, None),
                     ("operator-defect-heatmap", {"reject"}, True, None),
                     ("operator-check-capture", {"check_capture"}, False, "dim")]
            for name, decisions, heat, fault in cases:
                if not want(name):
                    continue
                win.show_page("operator")
                win.pages["operator"].set_heatmap(heat)
                if fault:
                    rt.camera.inject(fault)
                got = inspect_until(win, decisions)
                if got is None:
                    print(f"{name}: no such result within the tries; not saved", file=sys.stderr)
                    continue
                shots.shoot(name, settle=0.6)
            if want("operator-interlock"):
                shoot_interlock(win, shots)
            for key in list(win.pages):
                if key == "operator" or not want(f"page-{key}"):
                    continue
                win.show_page(key)
                shots.shoot(f"page-{key}", settle=2.0)  # pages load their data on the task runner
        finally:
            win.close()
            win.deleteLater()
            pump(0.2)
            rt.close()
    if want("operator-xray-window"):
        shoot_xray(args.xray_config, shots)
    print(f"{len(shots.saved)} screenshots in {args.out}")
    return 0


def shoot_interlock(win: QtMainWindow, shots: Shooter) -> None:
    """The line held by an interlock, the last verdict still on its banner."""
    cycle = win.ctx.runtime.cycle
    win.show_page("operator")
    op = win.pages["operator"]
    op.set_heatmap(False)
    inspect_until(win, {"pass"})
    cycle.suspend(INTERLOCK_REASON, source="interlock")
    try:
        wait_for(lambda: op.held.isVisible(), 5)
        shots.shoot("operator-interlock", settle=2.5)  # the status bar's health poll too
    finally:
        cycle.resume(source="interlock")
        wait_for(lambda: not op.held.isVisible(), 5)


def shoot_xray(config: Path, shots: Shooter) -> None:
    """A radiograph through the recipe's first preset, with the heatmap, on its own station."""
    cfg = load_config(config)
    with tempfile.TemporaryDirectory(prefix="linestation-xray-shots-") as tmp:
        cam = cfg.camera
        if cam.type == "xray_folder":  # the simulated detector writes into the temp dir, not the repo
            cam = cam.model_copy(update={"folder": Path(tmp) / "inbox"})
        ui = cfg.ui.model_copy(update={"demo_mode": True, "idle_signout_min": 600})
        cfg = cfg.model_copy(update={"camera": cam, "ui": ui})
        print(f"opening the X-ray station in {tmp} ...", flush=True)
        rt = StationRuntime.open(cfg, Path(tmp) / "data", progress=lambda m: print(m, flush=True))
        ctx = build_context(rt)
        win = QtMainWindow(ctx)
        win.setGeometry(0, 0, *SIZE)
        win.setFixedSize(*SIZE)
        win.show()
        wait_for(win.isVisible)
        shots.window = win
        try:
            secret = secrets.token_urlsafe(16)
            ctx.users.create_first_admin("admin", secret, "Station admin")
            win.sign_in_screen.signed_in.emit(ctx.users.sign_in("admin", secret))
            wait_for(lambda: "operator" in win.pages)
            op = win.pages["operator"]
            op.set_heatmap(True)
            if inspect_until(win, {"reject", "review"}) is None:
                print("operator-xray-window: no defect within the tries; not saved", file=sys.stderr)
                return
            wait_for(lambda: op.window_level.isVisible(), 5)
            shots.shoot("operator-xray-window", settle=0.6)
        finally:
            win.close()
            win.deleteLater()
            pump(0.2)
            rt.close()


if __name__ == "__main__":
    sys.exit(main())
