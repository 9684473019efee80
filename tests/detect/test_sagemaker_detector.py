"""The SageMaker detector against moto server on 127.0.0.1, and its fallback to the local model."""
from __future__ import annotations

import base64
import hashlib
import json
import socket
import time
import urllib.request

import cv2
import numpy as np
import pytest

from station.config import parse_config
from station.aws_client import AwsEndpoint
from station.detect.sagemaker_detector import EndpointResponseError, SageMakerDetector, from_config, parse_result
from station.inspect.decide import Decision, DecisionPolicy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary_safe_sagemaker_runtime():
    """Let moto's sagemaker-runtime accept raw image bodies, as the real endpoint does.

    moto 5.2.5 decodes every request body as UTF-8 and JSON-dumps it as the key of its
    canned results, so a PNG body gets a 500 from the stand-in. This keeps moto's server,
    routing and canned-result API and only makes that request parsing binary-safe (the
    body is keyed by its hash instead). Returns an undo function.
    """
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

    original = SageMakerRuntimeResponse.invoke_endpoint

    def invoke_endpoint(self):
        raw = self.raw_body if isinstance(self.raw_body, bytes) else str(self.raw_body).encode()
        self.body = hashlib.sha256(raw).hexdigest()
        return original(self)

    SageMakerRuntimeResponse.use_raw_body = True
    SageMakerRuntimeResponse.invoke_endpoint = invoke_endpoint

    def undo() -> None:
        SageMakerRuntimeResponse.use_raw_body = False
        SageMakerRuntimeResponse.invoke_endpoint = original

    return undo


@pytest.fixture(scope="module")
def moto_url():
    from moto.server import ThreadedMotoServer

    undo = _binary_safe_sagemaker_runtime()
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        undo()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def _queue_results(url: str, bodies: list[str]) -> None:
    data = json.dumps({"results": [{"Body": b, "ContentType": "application/json",
                                    "InvokedProductionVariant": "AllTraffic", "CustomAttributes": ""}
                                   for b in bodies]}).encode()
    req = urllib.request.Request(f"{url}/moto-api/static/sagemaker/endpoint-results", data=data,
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 201 or r.status == 200


def _lfv_anomalous(shape: tuple[int, int], box: tuple[int, int, int, int]) -> str:
    """What the Computer Vision Defect Detection Model returns for a segmented scratch."""
    h, w = shape
    colour = np.full((h, w, 3), 255, np.uint8)
    x, y, bw, bh = box
    colour[y:y + bh, x:x + bw] = (0, 0, 255)  # BGR red = #FF0000
    ok, png = cv2.imencode(".png", colour)
    frac = bw * bh / (w * h)
    return json.dumps({
        "Source": {"Type": "direct"},
        "IsAnomalous": True,
        "Confidence": 0.93,
        "Anomalies": [
            {"Name": "background", "PixelAnomaly": {"TotalPercentageArea": 1 - frac, "Color": "#FFFFFF"}},
            {"Name": "scratch", "PixelAnomaly": {"TotalPercentageArea": frac, "Color": "#FF0000"}},
        ],
        "AnomalyMask": base64.b64encode(png.tobytes()).decode(),
    })


def _image(seed: int) -> np.ndarray:
    # distinct bytes per call: moto keys canned results by request body
    return np.random.default_rng(seed).integers(0, 255, (96, 128), dtype=np.uint8)


def test_endpoint_result_becomes_a_detection_result(moto_url, trained):
    _queue_results(moto_url, [_lfv_anomalous((96, 128), (10, 20, 30, 8))])
    det = SageMakerDetector("lfv-successor", endpoint=AwsEndpoint(endpoint_url=moto_url, read_timeout_s=5),
                            fallback=trained)
    res = det.detect(_image(1))
    assert res.extra["answered_by"] == "sagemaker"
    assert res.extra["variant"] == "AllTraffic"
    assert res.is_anomalous and res.confidence == pytest.approx(0.93)
    assert res.score == pytest.approx(0.93) and res.threshold == 0.5
    assert [a.name for a in res.anomalies] == ["background", "scratch"]
    assert res.anomalies[1].total_percentage_area == pytest.approx(30 * 8 / (96 * 128))
    assert res.anomaly_mask.shape == (96, 128)
    assert np.count_nonzero(res.anomaly_mask) == 30 * 8
    assert res.to_lfv()["IsAnomalous"] is True
    assert DecisionPolicy().decide(True, res)[0] is Decision.REJECT


def test_unusable_answer_falls_back_to_local_model(moto_url, trained):
    _queue_results(moto_url, ["<html>502 Bad Gateway</html>"])
    det = SageMakerDetector("lfv-garbage", endpoint=AwsEndpoint(endpoint_url=moto_url, read_timeout_s=5),
                            fallback=trained)
    image = np.asarray(trained.mean, np.uint8)  # any image the local model accepts
    image = cv2.resize(image, trained.reference_shape[::-1])
    res = det.detect(image)
    assert res.extra["answered_by"] == "local"
    assert res.model_id == trained.model_id
    assert "not JSON" in res.extra["fallback_reason"]


def test_unreachable_endpoint_falls_back_fast_and_backs_off(trained):
    closed = _free_port()  # nothing listens there: connection refused
    clock = [1000.0]
    det = SageMakerDetector("lfv-down", endpoint=AwsEndpoint(endpoint_url=f"http://127.0.0.1:{closed}",
                                                            connect_timeout_s=0.5, read_timeout_s=0.5,
                                                            max_attempts=1),
                            fallback=trained, retry_after_s=30, clock=lambda: clock[0])
    image = cv2.resize(np.asarray(trained.mean, np.uint8), trained.reference_shape[::-1])
    t0 = time.perf_counter()
    first = det.detect(image)
    assert time.perf_counter() - t0 < 3.0
    assert first.extra["answered_by"] == "local"
    assert first.extra["fallback_reason"].startswith("retryable:")
    assert first.model_id == trained.model_id
    clock[0] += 5  # within retry_after_s: the endpoint is not tried again
    second = det.detect(image)
    assert second.extra["answered_by"] == "local" and second.extra["endpoint_ms"] == 0.0
    assert "retried in 25 s" in second.extra["fallback_reason"]


def test_without_fallback_the_part_goes_to_review(trained):
    closed = _free_port()
    det = SageMakerDetector("lfv-down", endpoint=AwsEndpoint(endpoint_url=f"http://127.0.0.1:{closed}",
                                                            connect_timeout_s=0.5, max_attempts=1))
    res = det.detect(_image(2))
    assert res.extra["answered_by"] == "none" and res.confidence == 0.0
    assert DecisionPolicy().decide(True, res)[0] is Decision.REVIEW
    json.dumps(res.to_json())  # records stay valid JSON


def test_config_section_builds_the_detector(moto_url, trained):
    cfg = parse_config(f"""
schema_version: 1
camera: {{type: sim}}
detector:
  type: sagemaker
  endpoint_name: lfv-config
  endpoint_url: {moto_url}
  read_timeout_s: 5
  fallback: local
""")
    det = from_config(cfg.detector, trained)
    assert det.endpoint.read_timeout_s == 5 and det.fallback is trained
    _queue_results(moto_url, [json.dumps({"IsAnomalous": False, "Confidence": 0.8})])
    res = det.detect(_image(3))
    assert res.extra["answered_by"] == "sagemaker" and not res.is_anomalous
    assert res.score == pytest.approx(0.2)


@pytest.mark.parametrize("payload, why", [
    (b'{"IsAnomalous": "yes", "Confidence": 0.9}', "IsAnomalous"),
    (b'{"IsAnomalous": true, "Confidence": 1.7}', "Confidence"),
    (b'{"IsAnomalous": true, "Confidence": 0.9, "AnomalyMask": "###"}', "base64"),
    (b'[1, 2]', "JSON object"),
])
def test_bad_answers_are_named(payload, why):
    with pytest.raises(EndpointResponseError, match=why):
        parse_result(payload, (8, 8), model_id="m")
