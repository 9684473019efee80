"""The committed ONNX backbone: recorded hash, shapes and strides, torch parity, bad files."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil

import numpy as np
import pytest

from station.detect.onnx_backbone import DEFAULT_ONNX, BackboneError, OnnxBackbone

DESC = DEFAULT_ONNX.with_suffix(".json")


def test_file_matches_recorded_hash_and_size_budget():
    desc = json.loads(DESC.read_text())
    data = DEFAULT_ONNX.read_bytes()
    assert hashlib.sha256(data).hexdigest() == desc["sha256"]
    assert len(data) == desc["bytes"] < 10 * 1024 * 1024  # "a few MB"


@pytest.mark.parametrize("hw", [(64, 64), (96, 160), (256, 320)])
def test_outputs_have_the_recorded_strides_and_channels(hw):
    bb = OnnxBackbone(threads=1)
    x = np.random.default_rng(0).random((1, 3, *hw), dtype=np.float32)
    out = bb.features(x)
    assert set(out) == {"feat8", "feat16"}
    for name, arr in out.items():
        s, c = bb.info.strides[name], bb.info.channels[name]
        assert arr.shape == (1, c, hw[0] // s, hw[1] // s)
        assert arr.dtype == np.float32 and np.all(np.isfinite(arr))
    assert bb.info.strides == {"feat8": 8, "feat16": 16}


def test_features_depend_on_content_and_are_deterministic():
    bb = OnnxBackbone(threads=1)
    rng = np.random.default_rng(1)
    a = rng.random((1, 3, 64, 96), dtype=np.float32)
    b = a.copy()
    b[:, :, 20:40, 30:60] = 1.0 - b[:, :, 20:40, 30:60]  # a local change
    fa, fa2, fb = bb.features(a)["feat8"], bb.features(a)["feat8"], bb.features(b)["feat8"]
    np.testing.assert_array_equal(fa, fa2)
    diff = np.abs(fa - fb).sum(axis=1)[0]
    # the change shows up where it is (stride 8: rows 2..5, cols 3..7), not far away
    assert diff[2:5, 4:7].mean() > 10 * diff[:, -2:].mean()


def test_bad_input_shapes_are_refused():
    bb = OnnxBackbone(threads=1)
    with pytest.raises(ValueError, match="multiples of 16"):
        bb.features(np.zeros((1, 3, 70, 64), np.float32))
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        bb.features(np.zeros((1, 1, 64, 64), np.float32))


def test_truncated_file_fails_with_its_path(tmp_path):
    bad = tmp_path / DEFAULT_ONNX.name
    bad.write_bytes(DEFAULT_ONNX.read_bytes()[: 100_000])
    shutil.copy(DESC, tmp_path / DESC.name)
    with pytest.raises(BackboneError, match="content hash mismatch") as e:
        OnnxBackbone(bad)
    assert str(bad) in str(e.value)


def test_garbage_file_with_matching_description_fails_in_onnxruntime(tmp_path):
    bad = tmp_path / DEFAULT_ONNX.name
    bad.write_bytes(b"not an onnx graph" * 100)
    desc = json.loads(DESC.read_text())
    desc["sha256"] = hashlib.sha256(bad.read_bytes()).hexdigest()
    (tmp_path / DESC.name).write_text(json.dumps(desc))
    with pytest.raises(BackboneError, match="onnxruntime cannot load"):
        OnnxBackbone(bad)


def test_missing_description_is_a_clear_error(tmp_path):
    lone = tmp_path / DEFAULT_ONNX.name
    shutil.copy(DEFAULT_ONNX, lone)
    with pytest.raises(BackboneError, match="missing"):
        OnnxBackbone(lone)


def test_onnx_matches_torch_when_torch_is_installed():
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        pytest.skip("torch / efficientnet-lite-pytorch not installed (the [export] extra); "
                    "the ONNX-vs-torch parity check needs them")
    from station.detect.export_backbone import torch_features

    x = np.random.default_rng(2).random((1, 3, 128, 176), dtype=np.float32)
    out = OnnxBackbone(threads=1).features(x)
    t8, t16 = torch_features(x)
    for got, want in ((out["feat8"], t8), (out["feat16"], t16)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * float(np.abs(want).max()))
