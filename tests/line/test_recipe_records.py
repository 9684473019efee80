"""After a line recipe switch every record names the recipe it was inspected with, and no
trigger can slip into a switch in progress (the real station, its SQLite store, its line)."""
from __future__ import annotations

import shutil
import threading
import time

from line_config import line_config

from station.capture.base import PartContext
from station.config import GreyWindowConfig
from station.line.handshake import PartRequest
from station.line.recipes import RecipeSwitcher
from station.line.registers import ResultCode
from station.runtime import StationRuntime


def _record(rt, inspection_id: str) -> dict:
    return rt.store.get(inspection_id)


def test_parts_of_the_station_own_trigger_carry_the_recipe_the_mes_selected(make_line_station):
    rt = make_line_station(modbus=True)
    answer = rt.line.handshake.select_recipe("b", "opcua:mes")
    assert answer.ok and rt.cycle.context.recipe == "b"
    (out,) = list(rt.run(count=1))
    doc = _record(rt, out.inspection_id)
    assert out.context.recipe == "b" and doc["recipe"] == "b", doc["recipe"]
    assert "/b@v" in doc["calibration_version"]


def test_a_part_whose_recipe_is_not_the_active_one_is_not_inspected(make_line_station):
    rt = make_line_station(modbus=False)
    grabs = rt.camera._trigger_count
    out = rt.cycle.inspect(PartContext(part_id="WRONG-1", lot="L", recipe="b"))  # the cycle runs a
    assert out.fault["kind"] == "recipe_mismatch" and out.frame is None
    assert out.decision.value == "check_capture" and rt.camera._trigger_count == grabs  # no image taken
    assert _record(rt, out.inspection_id)["recipe"] == "b" and rt.cycle.state.value == "armed"


class _SlowSwitcher:
    """The real recipe switcher, made slow for real (a sleep before it switches)."""

    def __init__(self, inner, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s
        self.entered = threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def select(self, key, who):
        self.entered.set()
        time.sleep(self.delay_s)
        return self.inner.select(key, who)


def test_a_trigger_during_a_recipe_switch_is_answered_not_ready_and_records_nothing(make_line_station):
    rt = make_line_station(modbus=True)
    hs = rt.line.handshake
    slow = _SlowSwitcher(hs.recipes, delay_s=0.5)
    hs.recipes = slow
    answers: list = []
    switch = threading.Thread(target=lambda: answers.append(hs.select_recipe("b", "opcua:mes")))
    switch.start()
    assert slow.entered.wait(5)
    assert not hs.status().trigger_ready
    ticket = hs.trigger(PartRequest(part_id="DURING-1"), "opcua")
    result = hs.wait(ticket)
    switch.join(timeout=10)
    assert result.code == ResultCode.NOT_READY and "recipe" in result.message
    assert answers[0].ok and rt.store.count() == 0
    hs.acknowledge()
    after = hs.wait(hs.trigger(PartRequest(part_id="AFTER-1"), "opcua"))
    assert after.result_id and _record(rt, after.result_id)["recipe"] == "b"


def test_a_recipe_with_another_grey_window_than_the_running_model_is_refused(tmp_path, line_template):
    cfg = line_config()
    windowed = cfg.recipes[1].model_copy(update={"grey_window": GreyWindowConfig(low=1000, high=30000)})
    cfg = cfg.model_copy(update={"recipes": [cfg.recipes[0], windowed, cfg.recipes[2]]})
    data_dir = tmp_path / "data"
    for part in ("calibration", "models"):
        shutil.copytree(line_template / part, data_dir / part)
    rt = StationRuntime.open(cfg, data_dir)
    try:
        switcher = RecipeSwitcher(rt)
        answer = switcher.select("b", "opcua:mes")
        assert answer.code == ResultCode.WINDOW_MISMATCH and answer.recipe == "a"
        assert "1000..30000" in answer.message and rt.cycle.context.recipe == "a"
        (entry,) = [e for e in rt.store.audit_entries(limit=20) if e["action"] == "recipe.refused"]
        assert entry["payload"]["code"] == ResultCode.WINDOW_MISMATCH
    finally:
        rt.close()
