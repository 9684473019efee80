"""Monitoring on a real (simulated) station: drift alarms, line events, review disagreement."""
from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from sim_dataset import open_small_station, run_cli, run_parts
from station.config import LifecycleConfig
from station.monitor.charts import ewma, western_electric
from station.monitor.drift import ks_statistic, psi
from station.monitor.status import monitor_status
from station.review_labels import record_review_label
from station.store.station_store import StationStore

LIFE = LifecycleConfig()


def _status(data):
    return monitor_status(data, LIFE.monitor, LIFE.retrain)


def test_in_control_then_an_injected_brightness_drift_alarms(station):
    before = _status(station)
    assert before["status"] == "ok", before["alarms"]
    assert before["capture"]["brightness"]["n"] == 40
    assert not before["retrain"]["recommended"]

    rt = open_small_station(station)
    try:
        rt.camera.set_exposure(rt.camera.exposure_us * 1.03)  # the lamp slowly gets brighter
        run_parts(rt, 20)
    finally:
        rt.close()
    after = _status(station)
    assert after["status"] == "alarm"
    rules = {a["rule"] for a in after["alarms"] if a["chart"] == "brightness"}
    assert "EWMA" in rules and rules & {"WE1", "WE2", "WE3"}
    assert not [a for a in after["alarms"] if a["chart"] != "brightness"]
    assert after["retrain"]["recommended"]
    assert any("drift alarm" in r and "brightness" in r for r in after["retrain"]["reasons"])
    # the command shows the same
    out = run_cli(station, "monitor")
    assert out.returncode == 0 and "status: ALARM" in out.stdout and "ALARM brightness" in out.stdout


def test_a_line_event_triggers_retraining_and_is_audited(station):
    bad = run_cli(station, "event", "record", "weather")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    ok = run_cli(station, "event", "record", "supplier", "--note", "bar stock from supplier B", "--user", "ana")
    assert ok.returncode == 0, ok.stderr
    status = json.loads(run_cli(station, "monitor", "--json").stdout)
    assert status["line_events"][0]["kind"] == "supplier" and status["line_events"][0]["user"] == "ana"
    assert any("line event" in r and "supplier" in r for r in status["retrain"]["reasons"])
    con = sqlite3.connect(station / "station.db")
    try:
        actor, action, payload = con.execute(
            "SELECT actor, action, payload FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    finally:
        con.close()
    assert (actor, action) == ("user:ana", "line.event") and json.loads(payload)["kind"] == "supplier"
    assert run_cli(station, "audit", "verify").returncode == 0


def test_review_disagreement_new_labels_and_a_dataset_from_reviewed_inspections(station):
    store = StationStore(station, recover=False)
    try:
        con = sqlite3.connect(station / "station.db")
        rows = con.execute("SELECT id, decision FROM inspections WHERE decision IN ('reject', 'pass') "
                           "ORDER BY id").fetchall()
        con.close()
        rejects = [i for i, d in rows if d == "reject"]
        passes = [i for i, d in rows if d == "pass"]
        # supervisors overrule 3 rejects and confirm the rest; they also confirm 7 passes as good
        for i in rejects[:3]:
            record_review_label(store, i, "mark_good", username="sup")
        for i in rejects[3:]:
            record_review_label(store, i, "confirm_defect", username="sup", defect_class="scratch")
        for i in passes[:7]:
            record_review_label(store, i, "mark_good", username="sup")
    finally:
        store.close()
    status = _status(station)
    review = status["review"]
    assert review["reviewed"] == len(rejects) + 7 and review["disagreements"] == 3
    assert review["rate"] == pytest.approx(3 / review["reviewed"])
    assert status["new_review_labels"] == review["reviewed"]

    out = run_cli(station, "dataset", "import-station", "line", "--decisions", "pass", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    counts = info["counts"]
    total_good = sum(c.get("good", 0) for c in (counts["train"], counts["validation"], counts["test"]))
    assert total_good == len(passes) + 3  # every pass, plus the three rejects overruled to good
    assert sum(c.get("scratch", 0) for c in (counts["validation"], counts["test"])) == len(rejects) - 3
    assert counts["train"].get("scratch", 0) == 0  # defects never go to the training split


def test_control_chart_and_drift_statistics():
    assert western_electric("x", [0.0] * 10, 0.0, 1.0) == []
    assert [a.rule for a in western_electric("x", [0, 0, 3.5], 0.0, 1.0)] == ["WE1"]
    assert western_electric("x", [0, 0, -3.5], 0.0, 1.0, sides=(1,)) == []
    assert [a.rule for a in western_electric("x", [0.5] * 8, 0.0, 1.0)] == ["WE4"]
    assert western_electric("x", [0.5] * 8, 0.0, 1.0, run_rule=False) == []
    assert [a.rule for a in western_electric("x", [2.5, 0, 2.5], 0.0, 1.0)] == ["WE2"]
    assert [a.rule for a in western_electric("x", [1.5, 1.5, 0, 1.5, 1.5], 0.0, 1.0)] == ["WE3"]
    zs, alarms = ewma("x", [0.8] * 20, 0.0, 1.0)  # a 0.8 sigma shift stays inside the asymptotic 1.0 limit
    assert not alarms and zs[-1] == pytest.approx(0.8, abs=0.01)
    _, alarms = ewma("x", [1.5] * 20, 0.0, 1.0)
    assert [a.index for a in alarms] == [4]
    with pytest.raises(ValueError, match="sigma must be > 0"):
        western_electric("x", [1.0], 0.0, 0.0)
    rng = np.random.default_rng(0)
    ref = rng.normal(0.3, 0.05, 400)
    same = rng.normal(0.3, 0.05, 200)
    moved = rng.normal(0.4, 0.05, 200)
    assert ks_statistic(ref, same) < 0.15 and psi(ref, same) < 0.1
    assert ks_statistic(ref, moved) > 0.5 and psi(ref, moved) > 0.25


def test_score_drift_against_the_models_evaluated_distribution(station):
    assert run_cli(station, "dataset", "import-station", "line", "--decisions", "pass").returncode == 0
    ev = run_cli(station, "evaluate", "active", "--dataset", "line", "--json")
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["registered"]  # scored on registered frames, as on the line
    before = _status(station)["score_drift"]
    assert before["reference"] == "line@1 test" and before["ks"] < LIFE.monitor.score_ks_alarm
    assert before["psi"] < LIFE.monitor.score_psi_alarm
    rt = open_small_station(station)
    try:
        rt.camera.set_exposure(rt.camera.exposure_us * 1.015)
        run_parts(rt, 40)
    finally:
        rt.close()
    recent = LIFE.monitor.model_copy(update={"window": 40, "min_scores": 15})  # only the drifted parts
    after = monitor_status(station, recent, LIFE.retrain)
    assert after["score_drift"]["n_recent"] >= 15
    assert after["score_drift"]["ks"] > LIFE.monitor.score_ks_alarm
    assert "score_drift" in {a["rule"] for a in after["alarms"]}, after["score_drift"]


def test_train_on_station_captures_registered_to_the_calibration(station):
    assert run_cli(station, "dataset", "import-station", "line", "--decisions", "pass").returncode == 0
    bad = run_cli(station, "train", "--dataset", "line", "--model-type", "variation", "--calibration", "SIM-0001/demo@v9")
    assert bad.returncode == 1 and "calibration profile SIM-0001/demo@v9" in bad.stderr
    out = run_cli(station, "train", "--dataset", "line", "--model-type", "variation",
                  "--calibration", "SIM-0001/demo@v1", "--json")
    assert out.returncode == 0, out.stderr
    model = json.loads(out.stdout)["model"]
    meta = json.loads((station / "models" / model / "model.json").read_text())
    assert meta["dataset"]["calibration"].startswith("SIM-0001/demo@v1#")
    ev = json.loads(run_cli(station, "evaluate", model, "--dataset", "line", "--json").stdout)
    assert ev["registered"] and ev["false_reject_rate"] == 0.0
