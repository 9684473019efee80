"""PatchCore on simulated parts: finds every seeded defect kind, passes unseen good parts,
works on grey / BGR / 16-bit input, honours the ROI and the alignment, keeps the aspect
ratio, round-trips through the model registry, and refuses bad input clearly."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from calibration.roi import Roi
from station.capture.sim_camera import DEFECT_KINDS, SimCamera, render_good
from station.detect.patchcore import PatchCoreModel, PatchCoreParams
from station.detect.patchcore_features import Window
from station.detect.registry import CorruptModel, ModelRegistry

W, H = 320, 256
N_TRAIN = 12


def _defects(kind: str, n: int, fmt: str = "Mono8", seed: int = 21):
    cam = SimCamera(width=W, height=H, pixel_format=fmt, defect_rate=1.0, defect_kinds=[kind], seed=seed)
    return [cam.render(i, fault=None) for i in range(n)]


def _hits(mask: np.ndarray, bbox) -> bool:
    x, y, w, h = bbox
    return bool(mask[max(0, y - 2) : y + h + 2, max(0, x - 2) : x + w + 2].any())


@pytest.fixture(scope="module")
def mono8() -> PatchCoreModel:
    return PatchCoreModel.train(render_good(N_TRAIN, seed=3, width=W, height=H))


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_finds_each_defect_kind_where_it_is(mono8, kind):
    for img, meta in _defects(kind, 3):
        r = mono8.detect(img)
        assert r.is_anomalous, (kind, r.score, mono8.threshold)
        assert _hits(r.anomaly_mask, meta["defect_bbox"]), (kind, meta["defect_bbox"], r.extra["peak_xy"])
        x, y, w, h = meta["defect_bbox"]
        px, py = r.extra["peak_xy"]
        assert x - 12 <= px <= x + w + 12 and y - 12 <= py <= y + h + 12
        assert r.anomalies[0].name == "background" and r.anomalies[1].total_percentage_area > 0
        assert r.heatmap.shape == img.shape and r.heatmap.dtype == np.float32
        assert r.heatmap[y : y + h, x : x + w].max() > 0.5  # 0.5 = at the threshold


def test_unseen_good_parts_pass(mono8):
    for img in render_good(8, seed=4, width=W, height=H):
        r = mono8.detect(img)
        assert not r.is_anomalous, (r.score, mono8.threshold)
        assert not r.anomaly_mask.any() and len(r.anomalies) == 1
        assert 0.5 <= r.confidence <= 1.0


def test_result_identity_and_threshold_are_documented(mono8):
    r = mono8.detect(render_good(1, seed=4, width=W, height=H)[0])
    assert r.model_id == mono8.model_id and r.model_hash == mono8.model_hash
    assert r.threshold == mono8.threshold
    t = mono8.training
    assert t["good_scores"]["n"] == N_TRAIN and "held-out" in t["threshold_rule"]
    assert mono8.threshold == pytest.approx(t["good_scores"]["max"] * mono8.params.margin)  # n < 1/frr_target
    lfv = r.to_lfv()
    assert lfv["IsAnomalous"] is False and lfv["Anomalies"][0]["Name"] == "background"


@pytest.mark.parametrize("fmt", ["BGR8", "Mono12", "Mono16"])
def test_colour_and_16_bit_input(fmt):
    good = render_good(N_TRAIN + 4, seed=5, width=W, height=H, pixel_format=fmt)
    model = PatchCoreModel.train(good[:N_TRAIN])
    assert model.dtype == good[0].dtype
    if fmt == "Mono12":
        assert model.bit_depth == 12
    for img in good[N_TRAIN:]:
        assert not model.detect(img).is_anomalous
    for img, meta in _defects("scratch", 2, fmt) + _defects("contamination", 2, fmt):
        r = model.detect(img)
        assert r.is_anomalous and _hits(r.anomaly_mask, meta["defect_bbox"]), (fmt, r.score, model.threshold)


def test_progress_reports_every_step():
    calls = []
    PatchCoreModel.train(render_good(5, seed=6, width=160, height=128), progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (11, 11) and [d for d, _ in calls] == list(range(1, 12))


def test_roi_is_honoured():
    roi = Roi(0, 0, W // 2, H)  # the left half of the part only
    model = PatchCoreModel.train(render_good(N_TRAIN, seed=3, width=W, height=H), roi=roi)
    assert model.roi == roi
    outside = inside = 0
    for img, meta in _defects("spot", 8) + _defects("contamination", 8):
        x, y, w, h = meta["defect_bbox"]
        r = model.detect(img)
        assert not r.anomaly_mask[:, W // 2 + 2 :].any() and r.heatmap[:, W // 2 + 2 :].max() == 0.0
        if x > W // 2 + 8:  # wholly right of the ROI: not the model's business
            outside += 1
            assert not r.is_anomalous
        elif x + w < W // 2 - 8:
            inside += 1
            assert r.is_anomalous and _hits(r.anomaly_mask, meta["defect_bbox"])
    assert outside and inside  # the seeded parts put defects on both sides
    with pytest.raises(ValueError, match="does not fit"):
        model.detect(img, roi=Roi(0, 0, W + 1, H))


def test_alignment_maps_a_shifted_frame_onto_the_reference(mono8):
    img, meta = _defects("contamination", 1)[0]
    dx, dy = 9.0, -6.0
    shifted = cv2.warpAffine(img, np.float32([[1, 0, dx], [0, 1, dy]]), (W, H), borderMode=cv2.BORDER_REFLECT)
    align = np.array([[1.0, 0, -dx], [0, 1.0, -dy]])  # frame -> reference
    inner = Roi(16, 16, W - 32, H - 32)  # stays inside the shifted frame
    r0 = mono8.detect(img, roi=inner)
    r1 = mono8.detect(shifted, roi=inner, alignment=align)
    assert r1.is_anomalous and r1.score == pytest.approx(r0.score, rel=0.1)
    x, y, w, h = meta["defect_bbox"]
    assert _hits(r1.anomaly_mask, (int(x + dx), int(y + dy), w, h))  # mask in frame pixels
    px, py = r1.extra["peak_xy"]
    assert abs(px - (r0.extra["peak_xy"][0] + dx)) <= 3 and abs(py - (r0.extra["peak_xy"][1] + dy)) <= 3


def test_aspect_ratio_of_elongated_parts_is_kept():
    win = Window.for_roi(Roi(0, 0, 1130, 460), long_side=448)
    assert win.size[0] == 448 and abs(win.size[1] / win.size[0] - 460 / 1130) < 0.01
    assert win.padded[0] % 16 == 0 and win.padded[1] % 16 == 0 and win.padded[1] >= win.size[1]
    good = render_good(6, seed=7, width=480, height=160)  # a 3:1 strip
    model = PatchCoreModel.train(good, params=PatchCoreParams(long_side=240))
    gw, gh = model.training["window"]["size"]
    assert (gw, gh) == (240, 80)
    r = model.detect(good[0])
    assert r.heatmap.shape == (160, 480)


def test_registry_round_trip_gives_identical_scores(mono8, tmp_path):
    reg = ModelRegistry(tmp_path / "models")
    mid = reg.save(mono8)
    loaded = reg.load(mid)
    assert isinstance(loaded, PatchCoreModel) and loaded.model_hash == mono8.model_hash
    assert loaded.threshold == mono8.threshold and loaded.model_version == mono8.model_version
    for img, _ in _defects("scratch", 2) + [(g, None) for g in render_good(2, seed=4, width=W, height=H)]:
        a, b = mono8.detect(img), loaded.detect(img)
        assert a.score == b.score and np.array_equal(a.anomaly_mask, b.anomaly_mask)
    size = (reg.info(mid).path / "model.npz").stat().st_size
    assert size < 50 * 1024 * 1024
    reg.set_active(mid)
    assert reg.load_active().model_id == mid


def test_model_from_another_backbone_is_refused(mono8, tmp_path):
    reg = ModelRegistry(tmp_path / "models")
    mid = reg.save(mono8)
    meta_path = reg.info(mid).path / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["backbone"]["sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CorruptModel, match="retrain"):
        reg.load(mid)


def test_bad_input_is_refused_clearly(mono8):
    img = render_good(1, seed=4, width=W, height=H)[0]
    with pytest.raises(ValueError, match="expects"):
        mono8.detect(img[:, :-1])
    with pytest.raises(ValueError, match="uint8 or uint16"):
        mono8.detect(img.astype(np.float32))
    with pytest.raises(ValueError, match="2x3"):
        mono8.detect(img, alignment=np.eye(2))
    with pytest.raises(ValueError, match="at least"):
        PatchCoreModel.train([img, img])
    with pytest.raises(ValueError, match="expected"):
        PatchCoreModel.train([img] * 4 + [img[:, :-2]])
    with pytest.raises(ValueError, match="long_side"):
        PatchCoreParams(long_side=10)
    with pytest.raises(ValueError, match="unknown PatchCoreParams keys"):
        PatchCoreParams.from_dict({"long_sid": 320})
    assert PatchCoreParams.from_dict(PatchCoreParams().to_dict()) == PatchCoreParams()


def test_random_projection_option_round_trips(tmp_path):
    model = PatchCoreModel.train(render_good(N_TRAIN, seed=3, width=W, height=H),
                                 params=PatchCoreParams(proj_dim=48))
    assert model.projection is not None and model.bank.shape[1] == 48
    for img, meta in _defects("scratch", 2):
        r = model.detect(img)
        assert r.is_anomalous and _hits(r.anomaly_mask, meta["defect_bbox"])
    assert not model.detect(render_good(1, seed=4, width=W, height=H)[0]).is_anomalous
    reg = ModelRegistry(tmp_path)
    loaded = reg.load(reg.save(model))
    img = _defects("scratch", 1)[0][0]
    assert loaded.detect(img).score == model.detect(img).score


def test_with_many_images_the_threshold_is_a_quantile_not_the_maximum():
    good = render_good(111, seed=8, width=128, height=128)
    model = PatchCoreModel.train(good, params=PatchCoreParams(long_side=64))
    held = np.asarray(model.training["good_scores"]["values"])
    assert held.size == 111
    q = np.quantile(held, 0.99, method="higher")
    assert model.threshold == pytest.approx(q * model.params.margin) and q < held.max()
