"""bench/handshake.py's JSON line stays valid JSON when a path got no samples (null, not NaN)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "handshake.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_handshake", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_path_without_samples_is_null_in_the_json_line():
    bench = _bench()
    data = {"baseline": [10.0, 12.0, 11.0], "modbus": [20.0, 22.0], "modbus_station": [5.0],
            "opcua": [], "modbus_minus_baseline": [9.0, 10.0], "opcua_minus_baseline": [], "error_codes": []}
    result = bench.summary(data, poll_ms=5.0, timeout_ms=2000)
    line = json.dumps(result, allow_nan=False)  # raises on NaN
    assert json.loads(line)["opcua_p50_ms"] is None and result["opcua_n"] == 0
    assert result["opcua_over_baseline_p50"] is None and result["targets_met"] is False
    assert result["modbus_p50_ms"] == 21.0 and result["modbus_over_baseline_p50"] == round(21.0 / 11.0, 3)
