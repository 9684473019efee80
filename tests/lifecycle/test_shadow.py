"""Shadow mode on a real (simulated) station: the shadow's result is recorded, never acted on."""
from __future__ import annotations

import threading

import cv2

from calibration.profile import ProfileStore
from calibration.spec import check_frame
from sim_dataset import open_small_station, run_parts
from station.detect.registry import ModelRegistry
from station.detect.variation import VariationModel
from station.lifecycle.threshold import ThresholdChoice
from station.lifecycle.trainers import with_threshold


def _shadow_model(rt, threshold: float | None = None, size: tuple[int, int] | None = None) -> VariationModel:
    profile = ProfileStore(rt.data_dir / "calibration").latest(rt.camera.describe().serial, "demo")
    images = rt.camera.good_images(12, start=50_000)
    if size is not None:  # a model for another camera resolution: it cannot score these frames
        return VariationModel.train([cv2.resize(i, size) for i in images])
    model = VariationModel.train(images, roi=profile.roi, alignments=[check_frame(profile, i).alignment for i in images])
    if threshold is not None:
        model = with_threshold(model, threshold, ThresholdChoice(threshold, "test: flag everything", "test"))
    return model


def test_shadow_results_are_recorded_but_never_acted_on(tmp_path):
    data = tmp_path / "data"
    rt = open_small_station(data)
    # a shadow so strict that it calls every part anomalous
    shadow = _shadow_model(rt, threshold=1e-6)
    rt.close()
    registry = ModelRegistry(data / "models")
    active_id = registry.active()
    registry.set_shadow(registry.save(shadow))

    rt = open_small_station(data)
    try:
        assert rt.cycle.shadow is not None and rt.cycle.shadow.detector.model_id == shadow.model_id
        outs = run_parts(rt, 15)
        records = [rt.store.get(o.inspection_id) for o in outs]
    finally:
        rt.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("shadow-model")]
    detected = [o for o in outs if o.detection is not None]
    assert len(detected) >= 10
    for o in detected:
        sh = o.detection.extra["shadow"]
        assert sh["model_id"] == shadow.model_id and sh["is_anomalous"] is True
        assert sh["agrees"] == o.detection.is_anomalous
        assert o.detection.model_id == active_id  # the verdict is the active model's
    decisions = {o.decision.value for o in detected}
    assert "pass" in decisions  # the shadow flagged these parts; the line passed them
    for rec, o in zip(records, outs):
        if o.detection is not None:
            assert rec["detection"]["shadow"]["model_id"] == shadow.model_id


def test_a_failing_shadow_never_stops_the_line(tmp_path):
    data = tmp_path / "data"
    rt = open_small_station(data)
    wrong = _shadow_model(rt, size=(160, 128))
    rt.close()
    registry = ModelRegistry(data / "models")
    registry.set_shadow(registry.save(wrong))
    rt = open_small_station(data)
    try:
        outs = run_parts(rt, 5)
    finally:
        rt.close()
    detected = [o for o in outs if o.detection is not None]
    assert detected and all("expects" in o.detection.extra["shadow"]["error"] for o in detected)
    assert all(o.inspection_id for o in outs)


def test_shadow_sampling_scores_every_nth_part(tmp_path):
    from sim_dataset import sim_camera
    from station.inspect.shadow import ShadowRunner

    cam = sim_camera()
    images = cam.good_images(12)
    model = VariationModel.train(images)
    runner = ShadowRunner(model, timeout_s=5, every=3)
    try:
        active = model.detect(images[0])
        got = [runner.finish(runner.start(images[i % 12], None, None), active) for i in range(6)]
    finally:
        runner.close()
    scored = [g for g in got if "score" in g]
    assert len(scored) == 2 and all(g["agrees"] for g in scored)
    assert sum("not sampled" in g.get("skipped", "") for g in got) == 4
