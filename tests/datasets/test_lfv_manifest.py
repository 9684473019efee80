"""The Lookout for Vision / SageMaker Ground Truth manifest: round trip and bad lines."""
from __future__ import annotations

import json

import numpy as np
import pytest

from station.datasets.folder_import import import_anomaly_folder
from station.datasets.lfv_manifest import export_manifest, import_manifest
from station.datasets.store import DatasetError


def test_round_trip_keeps_images_labels_splits_and_masks(anomaly_folder, dstore, tmp_path):
    import_anomaly_folder(dstore, "parts", anomaly_folder)
    ds = dstore.load("parts")
    out = tmp_path / "export" / "parts.manifest.jsonl"
    assert export_manifest(dstore, ds, out) == len(ds.entries)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    defect = next(x for x in lines if x["anomaly-label"] == 1)
    good = next(x for x in lines if x["anomaly-label"] == 0)
    meta = defect["anomaly-label-metadata"]
    assert meta["type"] == "groundtruth/image-classification" and meta["class-name"] == "anomaly"
    assert meta["human-annotated"] == "yes" and meta["job-name"].startswith("labeling-job/")
    assert good["anomaly-label-metadata"]["class-name"] == "normal" and "anomaly-mask-ref" not in good
    cmap = defect["anomaly-mask-ref-metadata"]["internal-color-map"]
    assert cmap["0"] == {"class-name": "BACKGROUND", "hex-color": "#ffffff", "confidence": 0.0}
    assert cmap["1"]["class-name"] in ("scratch", "spot", "contamination")
    assert defect["anomaly-mask-ref-metadata"]["type"] == "groundtruth/semantic-segmentation"

    info, created = import_manifest(dstore, "copy", out)
    assert created and info.counts == ds.info.counts
    back = dstore.load("copy")

    def key(d):
        return {(e.sha256, e.split, e.label) for e in d.entries}

    assert key(back) == key(ds)
    originals = {e.sha256: e for e in ds.entries}
    for e in back.entries:
        if e.mask is not None:
            assert np.array_equal(dstore.read_mask(e), dstore.read_mask(originals[e.sha256]))
    # the same manifest again: no new version
    assert import_manifest(dstore, "copy", out)[1] is False


def test_bad_lines_are_named_and_nothing_is_imported(anomaly_folder, dstore, tmp_path):
    img = str(anomaly_folder / "train" / "good" / "000.png")
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text("\n".join([
        json.dumps({"source-ref": img, "anomaly-label": 0}),
        json.dumps({"source-ref": img, "anomaly-label": 2}),
        json.dumps({"source-ref": "s3://bucket/a.png", "anomaly-label": 0}),
        json.dumps({"source-ref": str(tmp_path / "missing.png"), "anomaly-label": 1}),
        "{not json",
    ]) + "\n")
    with pytest.raises(DatasetError) as err:
        import_manifest(dstore, "bad", manifest)
    msg = str(err.value)
    assert "4 bad line(s), nothing imported" in msg
    assert "bad.jsonl:2: anomaly-label must be 0 (normal) or 1 (anomaly)" in msg
    assert "bad.jsonl:3: source-ref: s3://bucket/a.png is in S3" in msg
    assert "bad.jsonl:4: cannot read" in msg and "bad.jsonl:5: not JSON" in msg
    assert dstore.versions("bad") == []


def test_lookout_lines_without_split_take_the_given_split(anomaly_folder, dstore, tmp_path):
    manifest = tmp_path / "train.manifest"
    manifest.write_text("".join(json.dumps({
        "source-ref": f"file://{p}", "anomaly-label": 0,
        "anomaly-label-metadata": {"class-name": "normal", "type": "groundtruth/image-classification"}}) + "\n"
        for p in sorted((anomaly_folder / "train" / "good").iterdir())[:5]))
    info, _ = import_manifest(dstore, "lfv", manifest, default_split="train")
    assert info.counts["train"] == {"good": 5}
