"""A local run pins its calibration profiles by content hash and by the store they were read
from. A shard or resume on another machine - its own data dir, the same profile version
(same content hash) in its own store - uses its store's copy; a same-named profile with
other content is still refused."""
from __future__ import annotations

import json
import shutil

from conftest import copy_images_to_shards, result_rows

from station.cli import main


def _machines(tmp_path, station_data, recorded_images, capsys):
    inputs = copy_images_to_shards(recorded_images[:6], tmp_path)
    a, b = tmp_path / "machineA", tmp_path / "machineB"
    shutil.copytree(station_data, a)
    shutil.copytree(station_data, b)
    out = tmp_path / "out"  # shared between the machines (a network folder)
    base = ["batch", str(inputs), "--model", "active", "--out", str(out), "--run-id", "m", "--shards", "2",
            "--no-report", "--recipe", "rb", "--station", "s1"]
    assert main(["--data-dir", str(a), *base, "--shard", "0"]) == 0, capsys.readouterr().err
    shutil.rmtree(a / "calibration")  # machine A's store is not visible from machine B
    return a, b, out, base


def test_shard_on_another_machine_uses_its_store_copy_of_the_pinned_profile(tmp_path, station_data,
                                                                             recorded_images, capsys):
    _, b, out, base = _machines(tmp_path, station_data, recorded_images, capsys)
    capsys.readouterr()
    assert main(["--data-dir", str(b), *base, "--shard", "1"]) == 0, capsys.readouterr().err
    rows = result_rows(out)
    assert {r["shard"] for r in rows} == {0, 1} and len(rows) == 6
    assert all(r["spec_checked"] for r in rows)
    manifest = json.loads((out / "summary/run=m/run.json").read_text())
    pinned = manifest["settings"]["profiles"]["rb"]
    shard1 = json.loads((out / "summary/run=m/shard=1.json").read_text())
    assert shard1["spec_profiles"] == {"rb": pinned["identity"]}


def test_same_named_profile_with_other_content_is_refused(tmp_path, station_data, recorded_images, capsys):
    _, b, out, base = _machines(tmp_path, station_data, recorded_images, capsys)
    pinned = json.loads((out / "summary/run=m/run.json").read_text())["settings"]["profiles"]["rb"]
    doc_path = b / "calibration" / pinned["serial"] / pinned["recipe"] / f"v{pinned['version']}" / "profile.json"
    doc = json.loads(doc_path.read_text())
    doc["baseline"]["brightness"]["max"] += 0.01  # recalibrated on machine B, same version number
    doc_path.write_text(json.dumps(doc, indent=2, sort_keys=True))
    capsys.readouterr()
    assert main(["--data-dir", str(b), *base, "--shard", "1"]) == 1
    assert "is not the one run began with" in capsys.readouterr().err
    assert {r["shard"] for r in result_rows(out)} == {0}


def test_s3_run_ships_its_profiles_for_shards_on_machines_without_them(tmp_path, station_data, recorded_images,
                                                                       monkeypatch, capsys):
    from servers import start_s3

    s3 = start_s3(tmp_path / "weed", bucket="ls-ship")
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
        inputs = copy_images_to_shards(recorded_images[:6], tmp_path)
        a, b = tmp_path / "machineA", tmp_path / "machineB"
        shutil.copytree(station_data, a)
        shutil.copytree(station_data, b)
        shutil.rmtree(b / "calibration")  # machine B was never calibrated
        base = ["batch", str(inputs), "--model", "active", "--out", f"s3://{s3.bucket}/audits",
                "--s3-endpoint", s3.endpoint_url, "--run-id", "ship", "--shards", "2", "--no-report",
                "--recipe", "rb", "--station", "s1"]
        assert main(["--data-dir", str(a), *base, "--shard", "0"]) == 0, capsys.readouterr().err
        manifest = json.loads(s3.client().get_object(Bucket=s3.bucket, Key="audits/summary/run=ship/run.json")[
            "Body"].read())
        desc = manifest["settings"]["profiles"]["rb"]
        assert "root" not in desc and desc["key"].startswith("summary/run=ship/profiles/")
        assert {f"audits/{desc['key']}/{n}" for n in ("profile.json", "reference.png")} <= set(s3.keys("audits/"))
        capsys.readouterr()
        assert main(["--data-dir", str(b), *base, "--shard", "1"]) == 0, capsys.readouterr().err
        shard1 = json.loads(s3.client().get_object(Bucket=s3.bucket, Key="audits/summary/run=ship/shard=1.json")[
            "Body"].read())
        assert shard1["spec_profiles"] == {"rb": desc["identity"]} and shard1["images"] > 0
        rows = [json.loads(line) for key in s3.keys("audits/results/")
                for line in s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read().decode().splitlines()]
        assert len(rows) == 6 and all(r["spec_checked"] for r in rows)
    finally:
        s3.stop()
