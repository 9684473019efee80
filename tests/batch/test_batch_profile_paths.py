"""A run manifest names the calibration profiles a run checks against; its descriptors
become paths on this machine (the profile cache, the store). A crafted or corrupted
run.json must not aim those paths outside the cache: the run is refused and the local
calibration store is left as it was."""
from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from conftest import copy_images, result_rows

from station.batch.profiles import ProfileShipError, profile_ref
from station.cli import main


def _started_run(tmp_path, station_data, recorded_images):
    data = tmp_path / "data"
    shutil.copytree(station_data, data)  # this test aims at the store: never the shared one
    copy_images(recorded_images[:2], tmp_path / "in")
    out = tmp_path / "out"
    args = ["--data-dir", str(data), "batch", str(tmp_path / "in"), "--model", "active", "--out", str(out),
            "--run-id", "trav", "--no-report", "--recipe", "rb", "--station", "s1"]
    assert main(args) == 0
    manifest_path = out / "summary/run=trav/run.json"
    return data, out, args, manifest_path, json.loads(manifest_path.read_text())


def _store_files(data):
    return {p.relative_to(data).as_posix(): p.read_bytes() for p in (data / "calibration").rglob("*") if p.is_file()}


def test_traversing_profile_serial_in_run_json_is_refused(tmp_path, station_data, recorded_images, capsys):
    data, out, args, manifest_path, manifest = _started_run(tmp_path, station_data, recorded_images)
    desc = manifest["settings"]["profiles"]["rb"]
    # ship "a profile" with the run whose serial climbs from the cache into the store
    files = {"reference.png": b"not a png", "profile.json": b"{}"}
    evil = {k: v for k, v in desc.items() if k != "root"}
    evil["serial"] = "../../../calibration/" + desc["serial"]
    evil["key"] = "summary/run=trav/profiles/x"
    evil["files"] = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    for name, body in files.items():
        (out / evil["key"]).mkdir(parents=True, exist_ok=True)
        (out / evil["key"] / name).write_bytes(body)
    manifest["settings"]["profiles"]["rb"] = evil
    manifest_path.write_text(json.dumps(manifest))
    before = _store_files(data)
    rows_before = result_rows(out)
    capsys.readouterr()
    assert main([*args, "--resume"]) == 1
    err = capsys.readouterr().err
    assert "not a calibration store name" in err
    assert _store_files(data) == before
    assert result_rows(out) == rows_before


@pytest.mark.parametrize("change, message", [
    ({"content_hash": "../../../../calibration"}, "is not a sha256 hex digest"),
    ({"key": "summary/run=other/profiles/S/rb/v1"}, "is not this run's"),
    ({"recipe": ".."}, "not a calibration store name"),
    ({"serial": "a/../../b"}, "not a calibration store name"),
])
def test_profile_descriptor_paths_are_checked(tmp_path, change, message):
    files = {"reference.png": b"R", "profile.json": b"{}"}
    desc = {"identity": "S/rb/v1", "serial": "S", "recipe": "rb", "version": 1, "content_hash": "a" * 64,
            "key": "summary/run=r1/profiles/S/rb/v1",
            "files": {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}, **change}
    reads = []

    def get(key):
        reads.append(key)
        return files[key.rsplit("/", 1)[1]]

    with pytest.raises(ProfileShipError, match=message):
        profile_ref(desc, tmp_path, get, "r1")
    assert reads == [] and not (tmp_path / "batch").exists()
