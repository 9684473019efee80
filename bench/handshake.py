"""Trigger-to-result latency of the line handshake over Modbus TCP and OPC UA (loopback).

Runs the real station (simulated 1280x1024 Mono8 camera, the default PatchCore model,
SQLite + fsynced images) with both line servers on 127.0.0.1 in a temporary data dir and
measures, in the same run:

- baseline: the station's own inspection, ``cycle.inspect()`` called directly (capture,
  spec checks, model, decision, durable record) - what no transport can undercut;
- Modbus: a PLC client (pymodbus, tests/line/plc.py) writes part id + lot, raises the
  trigger coil and polls ``result_ready`` every ``--poll-ms`` (a PLC's scan; 5 ms default),
  then acknowledges. Latency = trigger written -> result_ready seen. The station-side time
  (trigger received -> result published) is reported beside it;
- OPC UA: an asyncua client calls ``Trigger(PartId, Lot)``, which returns the result.
  Latency = the method call's round trip, over the production default channel
  (Basic256Sha256 SignAndEncrypt, the MES's client certificate in the station's trusted
  folder; the session is set up once, before the timing).

    python bench/handshake.py [--count 200] [--poll-ms 5] [--json]

Prints p50 / p99 / n per path and the ratio of each p50 to the baseline p50. With --json
the last line is one JSON object: baseline_*, modbus_*, modbus_station_*, opcua_*,
modbus_minus_baseline_*, opcua_minus_baseline_* (p50_ms, p99_ms, n), *_over_baseline_p50,
error_codes, poll_ms, timeout_ms, model, width, height, target_p99_ms (100), targets_met.
The three paths run round robin, one part each, so they share the machine's load; the
"minus" rows are per-round differences (what the transport adds). The machine is shared:
read medians and ratios, not single runs.
"""
from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "line"))

from plc import MesClient, SimPlc  # noqa: E402

from cryptography.hazmat.primitives import serialization  # noqa: E402
from servers import free_ports  # noqa: E402
from station.capture.base import PartContext  # noqa: E402
from station.config import parse_config  # noqa: E402
from station.line.opcua_pki import key_pem, make_certificate  # noqa: E402
from station.runtime import StationRuntime  # noqa: E402

TARGET_P99_MS = 100.0
NS = "urn:linestation:bench"


def config(modbus_port: int, opcua_port: int, timeout_ms: int) -> dict:
    return {
        "schema_version": 1,
        "station": {"plant": "bench", "line": "l1", "station": "s1", "lot": "BENCH"},
        "camera": {"type": "sim", "width": 1280, "height": 1024, "pixel_format": "Mono8", "seed": 7,
                   "defect_rate": 0.25, "timeout_s": 1.0},
        "detector": {"type": "patchcore", "train_images": 40},
        "recipe": {"name": "bench"},
        "calibration": {"calibration_images": 24},
        "line": {"modbus": {"host": "127.0.0.1", "port": modbus_port, "unit_id": 1},
                 # the production default (signed and encrypted), the MES known by its trusted certificate
                 "opcua": {"endpoint": f"opc.tcp://127.0.0.1:{opcua_port}/linestation", "namespace": NS,
                           "security": "Basic256Sha256_SignAndEncrypt", "anonymous": "control"},
                 "result_timeout_ms": timeout_ms},
    }


def stats(values: list[float]) -> dict[str, float | int | None]:
    """Median and p99 in ms; None (JSON null, never NaN) for a path without samples."""
    s = sorted(values)
    if not s:
        return {"p50_ms": None, "p99_ms": None, "n": 0}
    p99 = s[min(len(s) - 1, max(0, round(0.99 * (len(s) - 1))))]
    return {"p50_ms": round(statistics.median(s), 3), "p99_ms": round(p99, 3), "n": len(s)}


def summary(data: dict, poll_ms: float, timeout_ms: int) -> dict:
    """The JSON result of one run: stats per path, ratios vs the direct baseline."""
    result: dict = {"model": "patchcore", "width": 1280, "height": 1024, "poll_ms": poll_ms,
                    "timeout_ms": timeout_ms, "target_p99_ms": TARGET_P99_MS}
    for name in ("baseline", "modbus", "modbus_station", "opcua", "modbus_minus_baseline", "opcua_minus_baseline"):
        for k, v in stats(data[name]).items():
            result[f"{name}_{k}"] = v
    base = result["baseline_p50_ms"]
    for name in ("modbus", "opcua"):
        p50 = result[f"{name}_p50_ms"]
        result[f"{name}_over_baseline_p50"] = round(p50 / base, 3) if p50 is not None and base else None
    result["error_codes"] = len(data["error_codes"])
    result["targets_met"] = all(result[f"{n}_p99_ms"] is not None and result[f"{n}_p99_ms"] <= TARGET_P99_MS
                                for n in ("modbus", "opcua"))
    return result


def _ms_text(value: float | None) -> str:
    return "    n/a" if value is None else f"{value:7.1f}"


def opcua_trigger(mes: MesClient, part_id: str) -> tuple[float, int]:
    """One MES Trigger call (it waits for the result): (ms, result code)."""
    t0 = time.perf_counter()
    _rid, _verdict, code, _msg = mes.call("Trigger", part_id, "BENCH")
    return (time.perf_counter() - t0) * 1000.0, int(code)


def inspect_direct(rt: StationRuntime, part_id: str) -> float:
    t0 = time.perf_counter()
    rt.cycle.inspect(PartContext(part_id=part_id, lot="BENCH", recipe="bench"))
    return (time.perf_counter() - t0) * 1000.0


def trusted_mes_certificate(rt: StationRuntime, folder: Path) -> tuple[Path, Path]:
    """A client certificate for the MES, placed in the station's trusted folder: (der, key pem)."""
    cert, key = make_certificate("MES bench", "urn:bench:mes", ["localhost", socket.gethostname()], server=False)
    der, pem = folder / "mes.der", folder / "mes.pem"
    der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    pem.write_bytes(key_pem(key))
    shutil.copy(der, rt.data_dir / "opcua-pki" / "trusted" / "mes.der")
    return der, pem


def measure(rt: StationRuntime, modbus_port: int, opcua_port: int, n: int, poll_s: float,
            mes_cert: tuple[Path, Path]) -> dict[str, list[float]]:
    """Round robin (direct, Modbus, OPC UA) per part, so every path sees the same machine load."""
    plc = SimPlc(modbus_port, poll_s=poll_s)
    mes = MesClient(opcua_port, NS, cert=mes_cert)
    out: dict[str, list[float]] = {k: [] for k in ("baseline", "modbus", "modbus_station", "opcua",
                                                   "modbus_minus_baseline", "opcua_minus_baseline")}
    codes: list[int] = []
    try:
        for i in range(n):
            base = inspect_direct(rt, f"BASE-{i:05d}")
            res = plc.inspect(f"MB-{i:05d}", "BENCH")
            station_side = rt.line.handshake.status().last_result.latency_ms  # trigger received -> published
            ua_ms, ua_code = opcua_trigger(mes, f"UA-{i:05d}")
            out["baseline"].append(base)
            out["modbus"].append(res.latency_ms)
            out["modbus_station"].append(station_side)
            out["opcua"].append(ua_ms)
            out["modbus_minus_baseline"].append(res.latency_ms - base)
            out["opcua_minus_baseline"].append(ua_ms - base)
            codes += [res.code, ua_code]
    finally:
        plc.close()
        mes.close()
    out["error_codes"] = [c for c in codes if c >= 10]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=200, help="parts per path")
    ap.add_argument("--poll-ms", type=float, default=5.0, help="the PLC's poll interval")
    ap.add_argument("--timeout-ms", type=int, default=1000, help="line.result_timeout_ms")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-handshake-"))
    mb, ua_port = free_ports(2)
    cfg = parse_config(yaml.safe_dump(config(mb, ua_port, args.timeout_ms)), "bench-handshake.yaml")
    try:
        t0 = time.perf_counter()
        rt = StationRuntime.open(cfg, tmp / "data", progress=lambda m: print(m, file=sys.stderr))
        print(f"station ready in {time.perf_counter() - t0:.1f} s (calibration, model training)", file=sys.stderr)
        try:
            for i in range(max(5, args.count // 20)):  # warm-up: first onnxruntime runs, caches
                inspect_direct(rt, f"WARM-{i:05d}")
            data = measure(rt, mb, ua_port, args.count, args.poll_ms / 1000.0, trusted_mes_certificate(rt, tmp))
        finally:
            rt.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = summary(data, args.poll_ms, args.timeout_ms)
    rows = (("baseline", "station inspect (direct call)"), ("modbus", f"Modbus TCP, PLC poll {args.poll_ms:g} ms"),
            ("modbus_station", "  station side (trigger -> published)"), ("opcua", "OPC UA Trigger (SignAndEncrypt)"),
            ("modbus_minus_baseline", "Modbus - direct, same round"), ("opcua_minus_baseline", "OPC UA - direct, same round"))
    for name, label in rows:
        ratio = result.get(f"{name}_over_baseline_p50")
        extra = f"  x{ratio:.2f} baseline" if ratio else ""
        print(f"{label:<40} p50 {_ms_text(result[f'{name}_p50_ms'])} ms  p99 {_ms_text(result[f'{name}_p99_ms'])} ms  "
              f"n {result[f'{name}_n']}{extra}")
    print(f"error codes answered: {result['error_codes']}; p99 <= {TARGET_P99_MS:.0f} ms met: {result['targets_met']}")
    if args.json:
        print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
