"""The `linestation` command as a user runs it: real processes, real data dirs."""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL_DEMO = """\
schema_version: 1
station: {plant: p1, line: l1, station: s1, lot: CLI}
camera:
  type: sim
  width: 640
  height: 512
  seed: 3
  defect_rate: 0.3
  fault_rates: {dim: 0.05, dropped: 0.03}
  timeout_s: 0.2
detector: {type: variation, train_images: 24}
recipe: {name: demo}
calibration: {calibration_images: 12}
"""


def run_cli(*args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "station.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def small_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "small.yaml"
    path.write_text(SMALL_DEMO)
    return path


@pytest.fixture(scope="module")
def bootstrapped(tmp_path_factory, small_config) -> Path:
    """A data dir after a first run (calibrated, trained, 12 inspections)."""
    data = tmp_path_factory.mktemp("data")
    proc = run_cli("--data-dir", str(data), "inspect", "--config", str(small_config), "--count", "12",
                   "--json", check=True)
    assert "calibrating" in proc.stderr and "training" in proc.stderr  # progress on first run
    (data / "first_run.jsonl").write_text(proc.stdout)
    return data


def test_inspect_json_lines_have_everything_a_consumer_needs(bootstrapped):
    lines = (bootstrapped / "first_run.jsonl").read_text().splitlines()
    assert len(lines) == 12
    for line in lines:
        doc = json.loads(line)
        assert doc["id"] and doc["part_id"].startswith("CLI-")
        assert doc["decision"] in {"pass", "reject", "review", "check_capture"}
        assert set(doc["timings_ms"]) == {"capture", "checks", "detect", "record", "total"}
        if doc["fault"] is None:
            assert len(doc["spec_checks"]) == 7
            for check in doc["spec_checks"]:
                assert {"name", "value", "low", "high", "passed"} <= set(check)
        if doc["detection"] is not None:
            lfv = doc["detection"]["DetectAnomalyResult"]
            assert {"IsAnomalous", "Confidence", "Anomalies"} <= set(lfv)
            assert {"score", "threshold", "model_id", "model_version"} <= set(doc["detection"])


def test_a_second_run_carries_on_the_same_record(bootstrapped, small_config):
    proc = run_cli("--data-dir", str(bootstrapped), "inspect", "--config", str(small_config),
                   "--count", "3", "--json", check=True)
    assert "training" not in proc.stderr  # the model from the first run is reused
    parts = [json.loads(x)["part_id"] for x in proc.stdout.splitlines()]
    assert parts == ["CLI-000013", "CLI-000014", "CLI-000015"]
    human = run_cli("--data-dir", str(bootstrapped), "inspect", "--config", str(small_config),
                    "--count", "2", check=True)
    assert "CLI-000016" in human.stdout and " ms" in human.stdout


def test_audit_verify_passes_then_names_the_tampered_entry(bootstrapped, tmp_path):
    ok = run_cli("--data-dir", str(bootstrapped), "audit", "verify")
    assert ok.returncode == 0 and "intact" in ok.stdout
    copy = tmp_path / "copy"
    copy.mkdir()
    con = sqlite3.connect(bootstrapped / "station.db")
    con.execute(f"VACUUM INTO '{copy / 'station.db'}'")
    con.close()
    con = sqlite3.connect(copy / "station.db")
    seq = con.execute("select seq from audit_log order by seq limit 1 offset 4").fetchone()[0]
    con.execute("update audit_log set payload = json_set(payload, '$.decision', 'pass') where seq = ?", (seq,))
    con.commit()
    con.close()
    bad = run_cli("--data-dir", str(copy), "audit", "verify")
    assert bad.returncode != 0 and f"entry {seq}" in bad.stderr


def test_validate_config(tmp_path, small_config):
    ok = run_cli("validate-config", str(small_config))
    assert ok.returncode == 0 and "OK" in ok.stdout
    demo = run_cli("validate-config", str(ROOT / "resources" / "demo.yaml"))
    assert demo.returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\ncamera:\n  type: sim\n  width: -3\n  lense: 25mm\n")
    proc = run_cli("validate-config", str(bad))
    assert proc.returncode == 1
    assert f"{bad}:4: camera.width = -3" in proc.stderr
    assert f"{bad}:5: camera.lense" in proc.stderr and "unknown key" in proc.stderr
    # the same file refuses to start the station, with the same messages
    proc = run_cli("--data-dir", str(tmp_path / "d"), "inspect", "--config", str(bad))
    assert proc.returncode == 1 and "camera.width" in proc.stderr
    assert not (tmp_path / "d").exists()


def _db_state(data: Path) -> tuple[list, list, list, list, set]:
    con = sqlite3.connect(data / "station.db")
    try:
        insp = con.execute("select id, image_path, image_sha256, fault from inspections").fetchall()
        heatmaps = {p for (p,) in con.execute("select heatmap_path from inspections where heatmap_path is not null")}
        spec = con.execute("select inspection_id, count(*) from spec_results group by inspection_id").fetchall()
        outbox = con.execute("select inspection_id, count(*) from outbox group by inspection_id").fetchall()
        audit = con.execute("select subject from audit_log where action = 'inspection.recorded'").fetchall()
        return insp, spec, outbox, audit, heatmaps
    finally:
        con.close()


def test_sigkill_at_random_points_loses_nothing_committed(bootstrapped, small_config, tmp_path):
    """Kill the station mid-stream again and again; every committed record stays whole."""
    import hashlib
    import shutil

    data = tmp_path / "data"
    shutil.copytree(bootstrapped, data)
    rng = random.Random(20261126)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    kills = 0
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-m", "station.cli", "--data-dir", str(data), "inspect",
                                 "--config", str(small_config), "--count", "0", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT, env=env)
        proc.stdout.readline()  # running (imports done, first part recorded)
        time.sleep(rng.uniform(0.02, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kills += 1
    # start again: recovery runs at open, and the station carries on
    proc = run_cli("--data-dir", str(data), "inspect", "--config", str(small_config), "--count", "2",
                   "--json", check=True)
    assert len(proc.stdout.splitlines()) == 2
    insp, spec, outbox, audit, heatmaps = _db_state(data)
    assert len(insp) > 17 + kills
    spec_count = dict(spec)
    outbox_count = dict(outbox)
    audited = {s for (s,) in audit}
    for iid, image_path, sha, fault in insp:
        assert outbox_count.get(iid, 0) >= 3, iid
        assert iid in audited
        if image_path:
            blob = (data / image_path).read_bytes()
            assert hashlib.sha256(blob).hexdigest() == sha
            assert spec_count.get(iid) == 7
        else:
            assert json.loads(fault)["kind"]
    referenced = {p for _, p, _, _ in insp if p} | heatmaps
    on_disk = {p.relative_to(data).as_posix() for p in (data / "images").rglob("*.png")
               if ".tmp" not in p.parts}
    assert on_disk == referenced  # stray files from killed writes were cleaned up
    assert not any((data / "images" / ".tmp").glob("*")) if (data / "images" / ".tmp").exists() else True
    verify = run_cli("--data-dir", str(data), "audit", "verify")
    assert verify.returncode == 0, verify.stderr
