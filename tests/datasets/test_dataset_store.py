"""Dataset versions: import from the anomaly folder layout, immutability, content hashes, bad input."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat

import cv2
import pytest

from station.datasets.folder_import import import_anomaly_folder
from station.datasets.store import DatasetError, parse_ref


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_import_records_every_image_and_mask_hash(anomaly_folder, dstore):
    info, created = import_anomaly_folder(dstore, "parts", anomaly_folder)
    assert created and info.ref == "parts@1"
    assert info.counts["images"] == 24 + 10 + 12 and info.counts["masks"] == 12
    assert info.counts["train"] == {"good": 24}
    # 30 % of each test class moved to validation, deterministically
    assert info.counts["validation"] == {"contamination": 1, "good": 3, "scratch": 1, "spot": 1}
    manifest = info.path / "manifest.jsonl"
    assert hashlib.sha256(manifest.read_bytes()).hexdigest() == info.manifest_sha256
    meta = json.loads((info.path / "dataset.json").read_text())
    assert meta["manifest_sha256"] == info.manifest_sha256 and meta["source"].startswith("folder:")
    lines = [json.loads(x) for x in manifest.read_text().splitlines()]
    by_source = {x["source"]: x for x in lines}
    for name, entry in by_source.items():
        original = anomaly_folder / name
        assert entry["sha256"] == _sha(original) == _sha(dstore.blob_path(entry["path"]))
        if entry["label"] != "good":
            assert entry["mask_sha256"] == _sha(anomaly_folder / "ground_truth" / entry["label"]
                                                / f"{original.stem}_mask.png")
        else:
            assert entry["mask"] is None
    # the version and its files are read-only
    for p in (manifest, info.path / "dataset.json", info.path):
        assert not os.stat(p).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    ds = dstore.load("parts@1")
    entry = next(e for e in ds.entries if e.label == "scratch")
    assert dstore.read_image(entry).shape == (256, 320)
    mask = dstore.read_mask(entry)
    assert mask.dtype == bool and 0 < mask.sum() < mask.size // 20


def test_reimport_unchanged_keeps_the_version_and_a_change_makes_a_new_one(anomaly_folder, dstore, tmp_path):
    v1, _ = import_anomaly_folder(dstore, "parts", anomaly_folder)
    again, created = import_anomaly_folder(dstore, "parts", anomaly_folder)
    assert not created and again.ref == "parts@1"
    changed = tmp_path / "changed"
    shutil.copytree(anomaly_folder, changed)
    extra = cv2.imread(str(changed / "train" / "good" / "000.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(changed / "train" / "good" / "999.png"), cv2.flip(extra, 1))
    v2, created = import_anomaly_folder(dstore, "parts", changed)
    assert created and v2.ref == "parts@2" and v2.counts["train"] == {"good": 25}
    assert dstore.info("parts", 1).manifest_sha256 == v1.manifest_sha256  # v1 untouched
    assert [i.ref for i in dstore.list()] == ["parts@1", "parts@2"]
    assert dstore.resolve("parts").ref == "parts@2"


def test_a_bad_image_fails_the_import_and_loses_nothing(anomaly_folder, dstore, tmp_path):
    v1, _ = import_anomaly_folder(dstore, "parts", anomaly_folder)
    bad = tmp_path / "bad"
    shutil.copytree(anomaly_folder, bad)
    (bad / "test" / "spot" / "007.png").write_bytes(b"\x89PNG this is not an image")
    blobs_before = sorted(p.name for p in dstore.blobs.rglob("*") if p.is_file())
    with pytest.raises(DatasetError, match=r"1 bad file\(s\), nothing imported:\n.*007\.png: not a readable image"):
        import_anomaly_folder(dstore, "parts", bad)
    assert dstore.versions("parts") == [1]
    assert sorted(p.name for p in dstore.blobs.rglob("*") if p.is_file()) == blobs_before
    assert dstore.load("parts").info.manifest_sha256 == v1.manifest_sha256


def test_layout_errors_say_what_is_expected(tmp_path, dstore):
    (tmp_path / "empty" / "test" / "good").mkdir(parents=True)
    with pytest.raises(DatasetError, match="expected good training images in .*train/good"):
        import_anomaly_folder(dstore, "x", tmp_path / "empty")
    with pytest.raises(DatasetError, match="not a folder"):
        import_anomaly_folder(dstore, "x", tmp_path / "missing")
    with pytest.raises(DatasetError, match="bad dataset name"):
        dstore.create("no spaces", [], source="test")
    with pytest.raises(DatasetError, match="bad dataset reference"):
        parse_ref("parts@latest")
    with pytest.raises(DatasetError, match="no dataset 'nope'"):
        dstore.load("nope")


def test_a_tampered_blob_is_refused_on_read(anomaly_folder, dstore):
    import_anomaly_folder(dstore, "parts", anomaly_folder)
    entry = dstore.load("parts").entries[0]
    path = dstore.blob_path(entry.path)
    os.chmod(path, 0o644)
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    img[0, 0] ^= 0xFF
    cv2.imwrite(str(path), img)
    with pytest.raises(DatasetError, match="content hash mismatch"):
        dstore.read_image(entry)


def test_an_altered_manifest_is_refused(anomaly_folder, dstore):
    info, _ = import_anomaly_folder(dstore, "parts", anomaly_folder)
    manifest = info.path / "manifest.jsonl"
    os.chmod(info.path, 0o755)
    os.chmod(manifest, 0o644)
    manifest.write_text(manifest.read_text().replace('"split":"test"', '"split":"train"', 1))
    with pytest.raises(DatasetError, match="the version was altered"):
        dstore.load("parts@1")
