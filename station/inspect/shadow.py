"""Shadow mode: a second model scores every part beside the active one; never acted on.

The shadow model runs on one worker thread *while* the active model runs (numpy / OpenCV
release the GIL, so on a multi-core station the two overlap), and the cycle waits for it
at most ``timeout_s`` after the active result is in. A shadow that is late, busy with an
earlier part, or raises is recorded as such; it can never hold up or change a verdict.
On a station whose cores are already busy the shadow competes with the active model for
CPU; ``every`` (score every n-th part) bounds that cost.
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import numpy as np

from calibration.roi import Roi
from station.detect.base import DetectionResult, Detector


class ShadowRunner:
    """Runs ``detector`` off the cycle thread and summarises its result for the record."""

    def __init__(self, detector: Detector, timeout_s: float = 0.5, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.detector = detector
        self.timeout_s = float(timeout_s)
        self.every = int(every)
        self._seen = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow-model")
        self._busy: Future | None = None

    def _run(self, image: np.ndarray, roi: Roi | None, alignment: np.ndarray | None) -> tuple[DetectionResult, float]:
        t0 = time.perf_counter()
        res = self.detector.detect(image, roi=roi, alignment=alignment)
        return res, (time.perf_counter() - t0) * 1000.0

    def start(self, image: np.ndarray, roi: Roi | None, alignment: np.ndarray | None) -> Future | None:
        """Submit the part, unless it is not sampled or the shadow is still busy (then None)."""
        self._seen += 1
        if (self._seen - 1) % self.every:
            return None
        if self._busy is not None and not self._busy.done():
            return None
        self._busy = self._pool.submit(self._run, image, roi, alignment)
        return self._busy

    def _identity(self) -> dict[str, Any]:
        d = self.detector
        return {"model_id": d.model_id, "model_version": d.model_version, "model_hash": d.model_hash}

    def finish(self, pending: Future | None, active: DetectionResult) -> dict[str, Any]:
        """The shadow's result summary (or why there is none)."""
        if pending is None:
            if (self._seen - 1) % self.every:
                return {**self._identity(), "skipped": f"not sampled (shadow scores every {self.every}th part)"}
            return {**self._identity(), "skipped": "shadow model still busy with an earlier part"}
        t0 = time.perf_counter()
        try:
            res, ms = pending.result(timeout=self.timeout_s)
        except FutureTimeout:
            return {**self._identity(), "skipped": f"no result within {self.timeout_s:g} s"}
        except Exception as exc:  # a broken shadow must never stop the line
            return {**self._identity(), "error": f"{type(exc).__name__}: {exc}"}
        area = sum(a.total_percentage_area for a in res.anomalies if a.name != "background")
        return {
            "model_id": res.model_id, "model_version": res.model_version, "model_hash": res.model_hash,
            "is_anomalous": bool(res.is_anomalous), "confidence": round(float(res.confidence), 6),
            "score": float(res.score), "threshold": float(res.threshold), "anomalous_area": round(float(area), 6),
            "agrees": bool(res.is_anomalous) == bool(active.is_anomalous), "latency_ms": round(ms, 3),
            "waited_ms": round((time.perf_counter() - t0) * 1000.0, 3),  # what the cycle paid
        }

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
