"""``linestation line``: the headless station driven only by the PLC, until SIGTERM."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys

import yaml
from line_config import line_config
from plc import SimPlc

from servers import BIN, free_ports, port_open, wait_for
from station.cli import main
from station.line.registers import ResultCode


def test_line_command_serves_the_plc_until_sigterm(tmp_path, line_template):
    data = tmp_path / "data"
    for part in ("calibration", "models"):
        shutil.copytree(line_template / part, data / part)
    port = free_ports(1)[0]
    cfg = tmp_path / "line.yaml"
    cfg.write_text(yaml.safe_dump(line_config(port).model_dump(mode="json", exclude_none=True)))
    proc = subprocess.Popen([str(BIN / "linestation"), "--data-dir", str(data), "line", "--config", str(cfg), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: port_open(port) or proc.poll() is not None, 60, "the station's Modbus server")
        assert proc.poll() is None, proc.stderr.read()
        plc = SimPlc(port)
        try:
            results = [plc.inspect(f"CMD-{i}", "LOT-C") for i in range(2)]
        finally:
            plc.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert [(x["part_id"], x["lot"], x["code"]) for x in lines] == [(f"CMD-{i}", "LOT-C", r.code)
                                                                    for i, r in enumerate(results)]
    assert all(r.code in (ResultCode.OK, ResultCode.NOT_OK, ResultCode.NOT_DECIDABLE) for r in results)
    assert "line handshake ready" in err and "stopping" in err


def test_line_command_without_a_line_section_says_what_is_missing(tmp_path, capsys):
    cfg = tmp_path / "no-line.yaml"
    cfg.write_text(yaml.safe_dump({"schema_version": 1, "camera": {"type": "sim"}}))
    assert main(["--data-dir", str(tmp_path / "d"), "line", "--config", str(cfg)]) == 1
    assert "no 'line' section" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # nothing was opened


def test_a_taken_port_is_a_clear_start_error(tmp_path, line_template, make_line_station):
    rt = make_line_station()
    data = tmp_path / "second"
    for part in ("calibration", "models"):
        shutil.copytree(line_template / part, data / part)
    cfg = tmp_path / "clash.yaml"
    cfg.write_text(yaml.safe_dump(line_config(rt.modbus_port).model_dump(mode="json", exclude_none=True)))
    code = subprocess.run([sys.executable, "-m", "station.cli", "--data-dir", str(data), "line", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=120)
    assert code.returncode == 1 and f"cannot listen on 127.0.0.1:{rt.modbus_port}" in code.stderr
