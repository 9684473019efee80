"""A detector backed by a SageMaker endpoint, with the local model as fallback.

Lookout for Vision's successor on AWS (the SageMaker "Computer Vision Defect Detection
Model") takes the image bytes (PNG or JPEG) and answers with Lookout's
``DetectAnomalyResult`` JSON: ``IsAnomalous``, ``Confidence``, and for segmentation models
``Anomalies`` (``PixelAnomaly.TotalPercentageArea``, ``Color``) and ``AnomalyMask`` (a
base64 PNG, background white, each anomaly class in its colour).

The station must never wait on the network, so every call has short connect / read
timeouts (``AwsEndpoint``), and when the endpoint is unreachable, throttled, or returns
something unusable, the part is scored by the local model instead. After a failure the
endpoint is left alone for ``retry_after_s`` (the local model answers meanwhile), so a
dead network costs one timeout, not one per part. Every result says who answered:
``extra["answered_by"]`` is ``"sagemaker"``, ``"local"`` (with ``fallback_reason``) or
``"none"`` (no fallback configured: confidence 0, which routes the part to review).

Lookout reports no raw score; ``score`` is the probability of "anomalous" implied by the
answer (``Confidence`` if anomalous, else ``1 - Confidence``) against a threshold of 0.5.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from calibration.roi import Roi
from station.aws_client import AwsEndpoint, client, describe_error, is_retryable
from station.detect.base import BACKGROUND, Anomaly, DetectionResult, Detector

log = logging.getLogger(__name__)
MODEL_TYPE = "sagemaker"


class EndpointResponseError(ValueError):
    """The endpoint answered, but not with a usable DetectAnomalyResult."""


def encode_image(image: np.ndarray, content_type: str) -> bytes:
    """PNG (lossless, 16-bit kept) or JPEG bytes of ``image`` (BGR or grey)."""
    if content_type == "image/jpeg":
        if image.dtype != np.uint8:  # JPEG is 8-bit: scale the significant range down
            image = cv2.convertScaleAbs(image, alpha=255.0 / max(int(image.max()), 1))
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    else:
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError(f"cannot encode a {image.shape} {image.dtype} image as {content_type}")
    return buf.tobytes()


def _decode_mask(b64: str, shape: tuple[int, int]) -> np.ndarray:
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise EndpointResponseError(f"AnomalyMask is not base64: {e}") from e
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise EndpointResponseError("AnomalyMask is not a readable image")
    if img.ndim == 3:
        rgb = img[:, :, :3]
        top = np.iinfo(img.dtype).max
        mask = ~(np.all(rgb == top, axis=2) | np.all(rgb == 0, axis=2))
    else:
        mask = img > 0
    mask = mask.astype(np.uint8) * 255
    if mask.shape != shape:
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return mask


def parse_result(payload: bytes, shape: tuple[int, int], *, model_id: str, model_version: str = "endpoint"
                 ) -> DetectionResult:
    """A Lookout-for-Vision-shaped JSON answer -> DetectionResult (EndpointResponseError if unusable)."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EndpointResponseError(f"response is not JSON: {payload[:80]!r}") from e
    if isinstance(doc, dict) and isinstance(doc.get("DetectAnomalyResult"), dict):
        doc = doc["DetectAnomalyResult"]
    if not isinstance(doc, dict):
        raise EndpointResponseError(f"expected a JSON object, got {type(doc).__name__}")
    anomalous, conf = doc.get("IsAnomalous"), doc.get("Confidence")
    if not isinstance(anomalous, bool):
        raise EndpointResponseError(f"IsAnomalous must be true/false, got {anomalous!r}")
    if not isinstance(conf, (int, float)) or isinstance(conf, bool) or not 0.0 <= float(conf) <= 1.0:
        raise EndpointResponseError(f"Confidence must be a number in 0..1, got {conf!r}")
    anomalies = []
    for a in doc.get("Anomalies") or []:
        try:
            px = a.get("PixelAnomaly") or {}
            anomalies.append(Anomaly(str(a["Name"]), float(px.get("TotalPercentageArea", 0.0)),
                                     str(px.get("Color", "#FF0000"))))
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise EndpointResponseError(f"bad entry in Anomalies: {a!r}") from e
    mask = _decode_mask(doc["AnomalyMask"], shape) if doc.get("AnomalyMask") else None
    if not anomalies or anomalies[0].name != BACKGROUND:
        frac = float(np.count_nonzero(mask)) / mask.size if mask is not None else 0.0
        anomalies.insert(0, Anomaly(BACKGROUND, 1.0 - frac, "#FFFFFF"))
    conf = float(conf)
    return DetectionResult(
        is_anomalous=anomalous, confidence=conf, score=conf if anomalous else 1.0 - conf, threshold=0.5,
        anomalies=anomalies, model_id=model_id, model_version=model_version, anomaly_mask=mask,
        heatmap=None if mask is None else (mask > 0).astype(np.float32),
        extra={"model_type": MODEL_TYPE},
    )


class SageMakerDetector(Detector):
    """Scores images on a SageMaker endpoint; see the module docstring."""

    model_type = MODEL_TYPE

    def __init__(self, endpoint_name: str, *, endpoint: AwsEndpoint | None = None,
                 content_type: str = "image/png", fallback: Detector | None = None, retry_after_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if content_type not in ("image/png", "image/jpeg"):
            raise ValueError(f"content_type must be image/png or image/jpeg, got {content_type!r}")
        self.endpoint_name = endpoint_name
        self.endpoint = endpoint or AwsEndpoint()
        self.content_type = content_type
        self.fallback = fallback
        self.retry_after_s = float(retry_after_s)
        self._clock = clock
        self._client = client("sagemaker-runtime", self.endpoint)
        self._skip_until = 0.0
        self._last_error = ""
        self.model_id = f"sagemaker:{endpoint_name}"
        self.model_version = "endpoint"
        self.model_hash = ""

    def _invoke(self, image: np.ndarray) -> DetectionResult:
        resp = self._client.invoke_endpoint(EndpointName=self.endpoint_name, ContentType=self.content_type,
                                            Accept="application/json", Body=encode_image(image, self.content_type))
        body = resp["Body"].read()
        res = parse_result(body, image.shape[:2], model_id=self.model_id)
        res.extra["answered_by"] = "sagemaker"
        res.extra["endpoint"] = self.endpoint_name
        if resp.get("InvokedProductionVariant"):
            res.extra["variant"] = resp["InvokedProductionVariant"]
        return res

    def detect(self, image: np.ndarray, *, roi: Roi | None = None, alignment: np.ndarray | None = None
               ) -> DetectionResult:
        now = self._clock()
        if now < self._skip_until:
            why = f"{self._last_error} (endpoint retried in {self._skip_until - now:.0f} s)"
            return self._fallback(image, roi, alignment, why, t_endpoint=0.0)
        t0 = time.perf_counter()
        try:
            res = self._invoke(image)
        except Exception as exc:  # network, throttling, model errors, unusable answers alike
            self._last_error = describe_error(exc)
            self._skip_until = now + self.retry_after_s
            kind = "retryable" if is_retryable(exc) else "permanent"
            log.warning("SageMaker endpoint %s failed (%s): %s", self.endpoint_name, kind, self._last_error)
            return self._fallback(image, roi, alignment, f"{kind}: {self._last_error}",
                                  t_endpoint=(time.perf_counter() - t0) * 1000.0)
        res.extra["endpoint_ms"] = round((time.perf_counter() - t0) * 1000.0, 3)
        return res

    def _fallback(self, image: np.ndarray, roi: Roi | None, alignment: np.ndarray | None, why: str,
                  *, t_endpoint: float) -> DetectionResult:
        extra: dict[str, Any] = {"fallback_reason": why, "endpoint": self.endpoint_name,
                                 "endpoint_ms": round(t_endpoint, 3)}
        if self.fallback is None:
            return DetectionResult(is_anomalous=False, confidence=0.0, score=0.0, threshold=0.5,
                                   anomalies=[Anomaly(BACKGROUND, 1.0, "#FFFFFF")], model_id=self.model_id,
                                   model_version=self.model_version,
                                   extra={**extra, "model_type": MODEL_TYPE, "answered_by": "none"})
        res = self.fallback.detect(image, roi=roi, alignment=alignment)
        res.extra.update(extra, answered_by="local")
        return res


def from_config(cfg: Any, fallback: Detector | None) -> SageMakerDetector:
    """Build from a ``SageMakerDetectorConfig`` (``station.config``)."""
    ep = AwsEndpoint(region=cfg.region, endpoint_url=cfg.endpoint_url, connect_timeout_s=cfg.connect_timeout_s,
                     read_timeout_s=cfg.read_timeout_s, max_attempts=cfg.max_attempts,
                     access_key_env=cfg.access_key_env, secret_key_env=cfg.secret_key_env)
    return SageMakerDetector(cfg.endpoint_name, endpoint=ep, content_type=cfg.content_type,
                             fallback=fallback if cfg.fallback == "local" else None,
                             retry_after_s=cfg.retry_after_s)
