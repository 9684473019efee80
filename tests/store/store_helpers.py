"""Builders shared by the store tests and the crash-test child process."""
from __future__ import annotations

import time

import numpy as np

from station.store.record import InspectionRecord

SPEC_NAMES = ("brightness", "clipping", "contrast", "focus", "position", "noise")


def make_record(i: int = 0, decision: str = "pass", **overrides) -> InspectionRecord:
    now = time.time()
    fields = dict(
        station="station1",
        recipe="bracket-a",
        part_id=f"P{i:06d}",
        lot="LOT-7",
        decision=decision,
        reason=f"test {decision}",
        started_at=now - 0.05,
        finished_at=now,
        config_hash="cfg0123456789abc",
        calibration_version="cal-2",
        model_id="variation",
        model_version="3",
        model_hash="deadbeef" * 8,
        camera={"serial": "SIM-0001", "pixel_format": "Mono8", "exposure_us": 4000.0,
                "gain_db": 1.5, "trigger_id": i, "trigger_mode": "software"},
        score=0.42 + i * 1e-3,
        is_anomalous=decision == "reject",
        confidence=0.93,
        detection={
            "DetectAnomalyResult": {
                "Source": {"Type": "direct"},
                "IsAnomalous": decision == "reject",
                "Confidence": 0.93,
                "Anomalies": [{"Name": "background",
                               "PixelAnomaly": {"TotalPercentageArea": 0.998, "Color": "#FFFFFF"}}],
                "AnomalyMask": None,
            },
            "score": 0.42, "threshold": 0.5, "model_id": "variation", "model_version": "3",
        },
        spec_checks=[
            {"name": n, "value": 50.0 + k, "low": 10.0, "high": 90.0, "passed": True,
             "unit": "DN", "message": ""}
            for k, n in enumerate(SPEC_NAMES)
        ],
        timings_ms={"capture": 11.5, "checks": 3.25, "detect": 7.0},
    )
    fields.update(overrides)
    return InspectionRecord(**fields)


def fault_record(i: int = 0, kind: str = "timeout") -> InspectionRecord:
    return make_record(
        i, "check_capture", fault={"kind": kind, "message": "no frame within 1000 ms"},
        spec_checks=[], detection=None, score=None, is_anomalous=None, confidence=None,
        model_id=None, model_version=None, model_hash=None, camera=None,
    )


def random_image(rng: np.random.Generator, shape=(1024, 1280), dtype=np.uint8) -> np.ndarray:
    hi = 256 if dtype == np.uint8 else 4096
    return rng.integers(0, hi, size=shape, dtype=dtype)
