"""Calibration profiles: immutable numbered versions, lossless references, clear errors."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from calib_helpers import RECIPE, SERIAL
from pydantic import ValidationError

from calibration.profile import (
    CalibrationProfile,
    CorruptProfileError,
    ProfileNotFound,
    ProfileRef,
    ProfileStore,
    Tolerances,
)
from calibration.roi import Roi


def _hand_made(reference: np.ndarray, bit_depth: int, **kw) -> CalibrationProfile:
    return CalibrationProfile(
        camera_serial=kw.pop("camera_serial", SERIAL),
        recipe=kw.pop("recipe", RECIPE),
        bit_depth=bit_depth,
        roi=Roi(8, 8, 48, 32),
        reference=reference,
        **kw,
    )


def _corrupt(path: Path, data: bytes) -> None:
    os.chmod(path, 0o644)
    path.write_bytes(data)


def test_round_trip(tmp_path, profile):
    store = ProfileStore(tmp_path)
    saved = store.save(profile)
    assert saved.version == 1 and profile.version == 0  # the original is untouched
    assert saved.identity == "SIM-0001/demo@v1"
    loaded = store.load(SERIAL, RECIPE, 1)
    assert loaded == saved
    assert np.array_equal(loaded.reference, profile.reference) and loaded.reference.dtype == np.uint8
    assert loaded.roi == profile.roi and loaded.tolerances == profile.tolerances
    assert loaded.baseline == profile.baseline and loaded.created_at == profile.created_at
    vdir = tmp_path / SERIAL / RECIPE / "v1"
    assert sorted(p.name for p in vdir.iterdir()) == ["profile.json", "reference.png"]
    raw = (vdir / "profile.json").read_bytes() + (vdir / "reference.png").read_bytes()
    assert loaded.content_hash == saved.content_hash == hashlib.sha256(raw).hexdigest()
    assert loaded.label == f"SIM-0001/demo@v1#{saved.content_hash[:12]}"
    doc = json.loads((vdir / "profile.json").read_text())
    assert doc["version"] == 1 and doc["tolerances"]["position_max_px"] == profile.tolerances.position_max_px
    assert doc["reference"]["sha256"] == profile.reference_sha256


@pytest.mark.parametrize("bit_depth, top", [(16, 65535), (12, 4095)])
def test_sixteen_bit_reference_is_stored_exactly(tmp_path, bit_depth, top):
    ref = np.random.default_rng(bit_depth).integers(0, top + 1, (48, 64), dtype=np.uint16)
    ref[0, 0], ref[0, 1] = top, 0
    store = ProfileStore(tmp_path)
    store.save(_hand_made(ref, bit_depth))
    png = cv2.imread(str(tmp_path / SERIAL / RECIPE / "v1" / "reference.png"), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16  # the file itself is 16-bit
    loaded = store.latest(SERIAL, RECIPE)
    assert loaded.reference.dtype == np.uint16 and np.array_equal(loaded.reference, ref)
    assert loaded.bit_depth == bit_depth and loaded.full_scale == top


def test_bgr_reference_round_trip(tmp_path):
    ref = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    store = ProfileStore(tmp_path)
    store.save(_hand_made(ref, 8))
    assert np.array_equal(store.load(SERIAL, RECIPE, 1).reference, ref)


def test_versions_increment_and_are_immutable(tmp_path, profile):
    store = ProfileStore(tmp_path)
    v1 = store.save(profile)
    v1_dir = store.path(SERIAL, RECIPE, 1)
    before = {p.name: p.read_bytes() for p in v1_dir.iterdir()}
    v2 = store.save(profile.with_tolerances(noise_max=0.05))
    v3 = store.save(profile)
    assert (v1.version, v2.version, v3.version) == (1, 2, 3)
    assert {p.name: p.read_bytes() for p in v1_dir.iterdir()} == before
    assert store.versions(SERIAL, RECIPE) == [1, 2, 3]
    assert store.latest(SERIAL, RECIPE).version == 3
    assert store.load(SERIAL, RECIPE, 2).tolerances.noise_max == 0.05
    assert store.load(SERIAL, RECIPE, 2).parent_version is None  # derived from an unsaved profile
    assert store.list() == [ProfileRef(SERIAL, RECIPE, 1), ProfileRef(SERIAL, RECIPE, 2), ProfileRef(SERIAL, RECIPE, 3)]
    assert store.list()[0].identity == "SIM-0001/demo@v1"
    assert oct((v1_dir / "profile.json").stat().st_mode & 0o777) == "0o444"
    assert v1.content_hash != v3.content_hash  # the version is part of the content
    assert not [p for p in (tmp_path / SERIAL / RECIPE).iterdir() if p.name.startswith(".tmp")]


def test_overriding_a_saved_profile_makes_a_child_version(tmp_path, profile):
    store = ProfileStore(tmp_path)
    v1 = store.save(profile)
    v2 = store.save(v1.with_tolerances(position_max_px=25.0))
    assert v2.version == 2 and v2.parent_version == 1 and v2.tolerances.position_max_px == 25.0
    assert store.load(SERIAL, RECIPE, 1).tolerances.position_max_px == profile.tolerances.position_max_px


def test_save_never_overwrites_even_with_a_stale_version_list(tmp_path, profile, monkeypatch):
    store = ProfileStore(tmp_path)
    store.save(profile)
    v1_json = store.path(SERIAL, RECIPE, 1).joinpath("profile.json").read_bytes()
    # Another writer's view: it believes nothing is stored yet and picks v1 as well.
    monkeypatch.setattr(ProfileStore, "versions", lambda self, s, r: [])
    again = store.save(profile.with_tolerances(noise_max=0.04))
    assert again.version == 2
    assert store.path(SERIAL, RECIPE, 1).joinpath("profile.json").read_bytes() == v1_json
    monkeypatch.undo()
    assert store.load(SERIAL, RECIPE, 2).tolerances.noise_max == 0.04


def test_failed_save_leaves_nothing_behind(tmp_path, profile, monkeypatch):
    store = ProfileStore(tmp_path)

    def broken_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", broken_rename)
    with pytest.raises(OSError, match="No space"):
        store.save(profile)
    monkeypatch.undo()
    assert list((tmp_path / SERIAL / RECIPE).iterdir()) == []
    assert store.latest(SERIAL, RECIPE) is None


def test_missing_profiles(tmp_path):
    store = ProfileStore(tmp_path)
    assert store.latest(SERIAL, RECIPE) is None
    assert store.list() == [] and store.versions(SERIAL, RECIPE) == []
    with pytest.raises(ProfileNotFound, match=r"SIM-0001/demo@v4.*profile.json"):
        store.load(SERIAL, RECIPE, 4)


@pytest.fixture
def stored(tmp_path, profile) -> tuple[ProfileStore, Path]:
    store = ProfileStore(tmp_path)
    store.save(profile)
    return store, store.path(SERIAL, RECIPE, 1)


def test_malformed_profile_json_names_the_file(stored):
    store, vdir = stored
    _corrupt(vdir / "profile.json", b"this is not json {")
    with pytest.raises(CorruptProfileError) as exc:
        store.load(SERIAL, RECIPE, 1)
    assert str(vdir / "profile.json") in str(exc.value) and "not valid JSON" in str(exc.value)


def test_truncated_profile_json_names_the_file(stored):
    store, vdir = stored
    body = (vdir / "profile.json").read_bytes()
    _corrupt(vdir / "profile.json", body[: len(body) // 2])
    with pytest.raises(CorruptProfileError) as exc:
        store.latest(SERIAL, RECIPE)
    assert str(vdir / "profile.json") in str(exc.value) and "truncated" in str(exc.value)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda d: d.pop("roi"), "roi: Field required"),
        (lambda d: d.update(bit_depth="twelve"), "bit_depth"),
        (lambda d: d["tolerances"].update(brightness_low=0.9, brightness_high=0.1),
         "brightness_low (0.9) must be below"),
        (lambda d: d["tolerances"].update(focus_limit=0.5), "tolerances.focus_limit: Extra inputs are not permitted"),
        (lambda d: d.update(roi={"x": 2000, "y": 0, "width": 10, "height": 10}), "does not fit"),
        (lambda d: d.update(version=7), "holds SIM-0001/demo@v7"),
        (lambda d: d.pop("reference"), "bad 'reference' entry"),
    ],
)
def test_invalid_profile_json_names_file_and_key(stored, edit, expected):
    store, vdir = stored
    doc = json.loads((vdir / "profile.json").read_text())
    edit(doc)
    _corrupt(vdir / "profile.json", json.dumps(doc).encode())
    with pytest.raises(CorruptProfileError) as exc:
        store.load(SERIAL, RECIPE, 1)
    assert str(vdir / "profile.json") in str(exc.value)
    assert expected in str(exc.value)


def test_damaged_or_swapped_reference_names_the_file(stored):
    store, vdir = stored
    png = (vdir / "reference.png").read_bytes()
    _corrupt(vdir / "reference.png", png[: len(png) // 3])
    with pytest.raises(CorruptProfileError, match="reference.png: not a readable PNG"):
        store.load(SERIAL, RECIPE, 1)
    other = cv2.imencode(".png", np.zeros((1024, 1280), np.uint8))[1].tobytes()
    _corrupt(vdir / "reference.png", other)
    with pytest.raises(CorruptProfileError, match="reference.png: does not match profile.json"):
        store.load(SERIAL, RECIPE, 1)
    (vdir / "reference.png").unlink()
    with pytest.raises(CorruptProfileError, match="reference image missing"):
        store.load(SERIAL, RECIPE, 1)


def test_names_must_be_safe_directory_names(tmp_path):
    ref = np.zeros((48, 64), np.uint8)
    for bad in ("../etc", "a/b", ".hidden", ""):
        with pytest.raises(ValidationError):
            _hand_made(ref, 8, camera_serial=bad)
        with pytest.raises(ValueError, match="not usable as a directory name"):
            ProfileStore(tmp_path).versions(bad, RECIPE)


def test_profile_validation():
    ref = np.zeros((48, 64), np.uint8)
    with pytest.raises(ValidationError, match="does not fit"):
        CalibrationProfile(camera_serial=SERIAL, recipe=RECIPE, bit_depth=8, roi=Roi(0, 0, 65, 10), reference=ref)
    with pytest.raises(ValidationError, match="bit_depth 12 does not fit a uint8"):
        _hand_made(ref, 12)
    with pytest.raises(ValidationError, match="uint8 or uint16"):
        _hand_made(ref.astype(np.float32), 8)
    with pytest.raises(ValidationError, match="must be below"):
        Tolerances(brightness_low=0.6, brightness_high=0.5)
    with pytest.raises(ValueError, match="Extra inputs"):
        _hand_made(ref, 8).with_tolerances(focus=0.5)


def test_profile_is_immutable_and_hashable(profile):
    with pytest.raises(ValidationError):
        profile.version = 5
    with pytest.raises(ValueError):
        profile.reference[0, 0] = 1  # read-only pixels
    assert hash(profile) == hash(profile.with_tolerances())
    assert profile != profile.with_tolerances(noise_max=0.05)
    assert profile.identity == "SIM-0001/demo@unsaved"
