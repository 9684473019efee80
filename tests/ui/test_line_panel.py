"""The line on the operator screen, driven by a real PLC: a pymodbus client against the
station's Modbus TCP server on 127.0.0.1 connects, triggers, switches the recipe and opens
the interlock; the line panel, the window / level presets and the LINE HELD banner follow."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from calibration.profile import ProfileStore
from conftest import make_user, sign_in
from servers import free_ports


def _load_plc():
    """tests/line/plc.py (a PLC's side of the handshake), without putting tests/line on sys.path
    (its conftest must not shadow this folder's)."""
    path = Path(__file__).resolve().parents[1] / "line" / "plc.py"
    spec = importlib.util.spec_from_file_location("line_plc_for_ui", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


SimPlc = _load_plc().SimPlc

PRESETS_B = [{"name": "Thick wall", "low": 20000, "high": 60000}]


def test_plc_link_recipe_switch_and_interlock_show_on_the_operator_screen(qtbot, station_window):
    (port,) = free_ports(1)
    win, ctx = station_window(config={
        "recipes": [{"number": 1, "name": "ui"}, {"number": 7, "name": "b", "display_presets": PRESETS_B}],
        "line": {"modbus": {"host": "127.0.0.1", "port": port}, "interlock_source": "modbus",
                 "result_timeout_ms": 5000}})
    rt = ctx.runtime
    profiles = ProfileStore(rt.data_dir / "calibration")  # recipe b: the same part, its own profile
    serial = rt.camera.describe().serial
    profiles.save(profiles.latest(serial, "ui").model_copy(update={"recipe": "b", "version": 0}))
    make_user(ctx, "olga", "operator")
    sign_in(qtbot, win, "olga")
    op = win.pages["operator"]
    panel = op.line_panel
    assert panel.recipe.text() == "recipe ui  (#1)"
    qtbot.waitUntil(lambda: f"listening on 127.0.0.1:{port}" in panel.links.text(), timeout=5000)
    assert "Modbus TCP" in panel.links.text() and "no trigger yet" in panel.links.text()
    assert op.window_level.presets == []

    plc = SimPlc(port)
    try:
        qtbot.waitUntil(lambda: "1 client(s)" in panel.links.text(), timeout=5000)
        res = plc.inspect(part_id="P-0042", lot="L9", recipe=1)
        assert res.code in (1, 2, 3)
        qtbot.waitUntil(lambda: "last trigger" in panel.links.text(), timeout=5000)
        qtbot.waitUntil(lambda: op.part.part.text() == "P-0042", timeout=5000)

        assert plc.select_recipe(7) == 0
        qtbot.waitUntil(lambda: panel.recipe.text() == "recipe b  (#7)", timeout=5000)
        assert [n for n, _w in op.window_level.presets] == ["Thick wall"]
        assert list(op.window_level.preset_buttons) == ["Thick wall"]

        plc.coil("interlock", True)
        qtbot.waitUntil(lambda: op.held.isVisible(), timeout=5000)
        assert op.held.headline == "interlock open"
        assert not op.start_button.isEnabled() and "interlock open" in op.start_button.toolTip()
        plc.coil("interlock", False)
        qtbot.waitUntil(lambda: not op.held.isVisible(), timeout=5000)
        assert op.start_button.isEnabled()
    finally:
        plc.close()
    qtbot.waitUntil(lambda: "0 client(s)" in panel.links.text(), timeout=5000)
