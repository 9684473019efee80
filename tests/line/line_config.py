"""The line tests' station config (sim camera, three numbered recipes, optional line servers)."""
from __future__ import annotations

import yaml

from station.config import LineStationConfig, parse_config

SERIAL = "SIM-LINE"


def line_config(modbus_port: int | None = None, opcua_port: int | None = None, *, timeout_ms: int = 2000,
                interlock_source: str = "any", opcua_security: dict | None = None,
                **camera: object) -> LineStationConfig:
    """``opcua_security``: the ``line.opcua`` security keys; by default the explicit
    ``security: none`` / ``anonymous: control`` the handshake tests run on."""
    data = {
        "schema_version": 1,
        "station": {"plant": "p1", "line": "l1", "station": "s1", "lot": "LOT-T"},
        "camera": {"type": "sim", "serial": SERIAL, "width": 640, "height": 512, "seed": 11,
                   "defect_rate": 0.0, "timeout_s": 0.5, **camera},
        "detector": {"type": "variation", "train_images": 30},
        "recipe": {"name": "a"},
        "recipes": [{"number": 1, "name": "a"},
                    {"number": 2, "name": "b", "decision": {"reject_min_confidence": 0.99, "pass_min_confidence": 0.99}},
                    {"number": 3, "name": "c"}],
        "calibration": {"calibration_images": 16},
    }
    line: dict = {"result_timeout_ms": timeout_ms, "interlock_source": interlock_source}
    if modbus_port:
        line["modbus"] = {"host": "127.0.0.1", "port": modbus_port, "unit_id": 1}
    if opcua_port:
        line["opcua"] = {"endpoint": f"opc.tcp://127.0.0.1:{opcua_port}/linestation", "namespace": "urn:test:line",
                         **(opcua_security or {"security": "none", "anonymous": "control"})}
    if modbus_port or opcua_port:
        data["line"] = line
    return parse_config(yaml.safe_dump(data), "line-test.yaml")
