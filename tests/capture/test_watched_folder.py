"""The watched folder as a trigger source: complete files only, each inspected exactly once,
bad files quarantined with a reason and a capture-fault record, restarts lose nothing.

Everything real: files written by threads the way detector software writes them, the
station's own cycle, a SQLite store in a temp dir; inspections are counted in the database.
"""
from __future__ import annotations

import io
import json
import os
import threading
import time
from dataclasses import replace

import cv2
import numpy as np
import pydicom
import pytest

from station.capture.base import BadImage, CaptureTimeout, TriggerMode
from station.capture.dicom_io import write_dicom
from station.capture.sim_xray import SimXrayWriter, XrayPartRenderer
from station.capture.tiff_io import write_tiff
from station.capture.watched_folder import FolderWatcher
from station.capture.xray_camera import XrayFolderCamera
from station.runtime import recorded_original
from station.store.station_store import StationStore
from xray_helpers import (
    folder_camera,
    wait_for,
    SPEC,
    contexts,
    fault_records,
    make_cycle,
    recorded_files,
    write_file,
    xray_model,
)



@pytest.fixture(scope="module")
def model():
    return xray_model()


camera = folder_camera


def radiograph(i: int) -> np.ndarray:
    return XrayPartRenderer(SPEC).render(i, defect=None)[0]


def test_file_renamed_into_place_is_taken_once_and_filed_away_after_its_record(tmp_path, model):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    image = radiograph(1)
    data = write_tiff(image)
    (inbox / ".a.tif.tmp").write_bytes(data[:1000])  # the temporary name is never touched
    cam = camera(inbox)
    with pytest.raises(CaptureTimeout):
        cam.grab(0.2)
    with open(inbox / ".a.tif.tmp", "ab") as f:
        f.write(data[1000:])
    os.replace(inbox / ".a.tif.tmp", inbox / "a.tif")
    with StationStore(tmp_path / "data") as store:
        cycle = make_cycle(cam, store, *model)
        cycle.arm()
        out = next(cycle.run(contexts(), count=1))
        assert out.frame.pixel_format == "Mono16" and np.array_equal(out.frame.image, image)
        assert recorded_files(store) == ["a.tif"]
        doc = store.get(out.inspection_id)
        # 16 bits in the stored PNG, pixel for pixel; the original file kept byte for byte
        png = cv2.imread(str(store.image_path(out.inspection_id)), cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint16 and np.array_equal(png, image)
        assert doc["image"]["bit_depth"] == 16
        assert (store.data_dir / doc["meta"]["original"]["stored"]).read_bytes() == data
    assert sorted(os.listdir(inbox / "done")) == ["a.tif"] and cam.watcher.in_processing() == []


def test_slow_writer_in_place_is_read_only_when_complete(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cam = camera(inbox, settle_s=0.3)
    writer = SimXrayWriter(inbox, SPEC, slow_chunks=5, slow_pause_s=0.1)  # pauses < settle_s
    t = threading.Thread(target=writer.write_part, args=(4,), kwargs={"defect": None, "write": "slow"})
    t.start()
    try:
        frame = cam.grab(5.0)
    finally:
        t.join()
    assert np.array_equal(frame.image, radiograph(4))
    with pytest.raises(CaptureTimeout):
        cam.grab(0.5)  # read once, not again
    lines = [json.loads(x) for x in cam.watcher.ledger_path.read_text().splitlines()]
    assert [e["event"] for e in lines] == ["claimed"]


def test_bad_files_are_quarantined_with_a_reason_and_recorded_as_capture_faults(tmp_path, model):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    good = write_tiff(radiograph(2))
    bad = {
        "empty.tif": b"",
        "cut.tif": good[: len(good) // 2],
        "text.tif": b"this is a detector log, not an image\n",
        "notes.txt": b"operator notes",
        "colour.png": cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes(),
    }
    for name, data in bad.items():
        write_file(inbox, name, data)
    write_file(inbox, "z_good.tif", good)
    cam = camera(inbox, formats=("tiff", "dicom", "png"))
    with StationStore(tmp_path / "data") as store:
        cycle = make_cycle(cam, store, *model)
        cycle.arm()
        outs = list(cycle.run(contexts(), count=len(bad) + 1))
        faults = fault_records(store)
        assert recorded_files(store) == ["z_good.tif"]
    assert sorted(f["fault"]["kind"] for f in faults) == ["bad_image"] * len(bad)
    assert [o.decision.value for o in outs].count("check_capture") == len(bad)
    reasons = {q["file"]: q["reason"] for q in cam.watcher.quarantined()}
    assert set(reasons) == set(bad)
    assert "empty" in reasons["empty.tif"] and "truncated" in reasons["cut.tif"]
    assert "not an image" in reasons["text.tif"] and ".txt" in reasons["notes.txt"]
    assert "colour" in reasons["colour.png"]
    for f in faults:  # the operator's record names the file and where it went
        assert "quarantine/" in f["fault"]["message"]
    for name, data in bad.items():  # nothing lost: the bytes sit in quarantine/
        assert (inbox / "quarantine" / name).read_bytes() == data


def test_burst_of_500_files_each_inspected_exactly_once(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    small = replace(SPEC, width=128, height=128)  # small radiographs: the test is about counting
    model = xray_model(small)
    writer = SimXrayWriter(inbox, small, fsync=False)
    n_good, bad_every = 500, 50
    written: list[str] = []

    def burst():
        for i in range(n_good):
            written.append(writer.write_part(i, defect=None).name)
            if i % bad_every == 0:
                write_file(inbox, f"bad_{i:04d}.tif", b"")  # zero-byte files in the burst

    t = threading.Thread(target=burst)
    t.start()
    cam = camera(inbox)
    t0 = time.perf_counter()
    with StationStore(tmp_path / "data") as store:
        cycle = make_cycle(cam, store, *model)
        cycle.arm()
        total = n_good + n_good // bad_every
        outs = list(cycle.run(contexts(), count=total))
        t.join()
        files = recorded_files(store)
        assert store.count() == total
    elapsed = time.perf_counter() - t0
    assert sorted(files) == sorted(written) and len(set(files)) == n_good  # each exactly once
    assert sum(o.fault is not None for o in outs) == n_good // bad_every
    assert len(cam.watcher.quarantined()) == n_good // bad_every
    assert len(os.listdir(inbox / "done")) == n_good and cam.watcher.in_processing() == []
    print(f"500-file burst: {total} inspections in {elapsed:.1f} s")


def test_restart_in_the_middle_loses_nothing_and_repeats_nothing(tmp_path, model):
    inbox, data_dir = tmp_path / "inbox", tmp_path / "data"
    inbox.mkdir()
    writer = SimXrayWriter(inbox, SPEC)
    for i in range(6):
        writer.write_part(i, defect=None)
    # run 1: two parts recorded; a third recorded but the station dies before filing it
    # away; a fourth claimed (read) but the station dies before recording it
    with StationStore(data_dir) as store:
        cam = camera(inbox, recorded=recorded_original(store))
        cycle = make_cycle(cam, store, *model)
        cycle.arm()
        list(cycle.run(contexts("A"), count=2))
        cycle.remove_inspection_listener(cam.on_recorded)
        list(cycle.run(contexts("B"), count=1))
        claimed_only = cam.grab(1.0)
        cycle.disarm()
    assert sorted(cam.watcher.in_processing()) == ["xray_000002.tif", claimed_only.source]
    for i in range(6, 9):  # landed while the station was down
        writer.write_part(i, defect=None)
    # run 2: a new process (new driver, new store object) on the same folders
    with StationStore(data_dir) as store:
        cam2 = camera(inbox, recorded=recorded_original(store))  # as the runtime opens it
        assert cam2.watcher.in_processing() == [claimed_only.source]  # the recorded one was filed away
        cycle = make_cycle(cam2, store, *model)
        cycle.arm()
        outs = list(cycle.run(contexts("C"), count=6))
        assert outs[0].frame.source == claimed_only.source and outs[0].frame.meta["original"]["resumed"]
        with pytest.raises(CaptureTimeout):
            cam2.grab(0.3)
        files = recorded_files(store)
    assert sorted(files) == [f"xray_{i:06d}.tif" for i in range(9)]  # all nine, each once
    assert cam2.watcher.in_processing() == [] and len(os.listdir(inbox / "done")) == 9


def test_an_identical_file_sent_again_is_not_inspected_twice(tmp_path, model):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    data = write_tiff(radiograph(9))
    write_file(inbox, "first.tif", data)
    cam = camera(inbox)
    with StationStore(tmp_path / "data") as store:
        cycle = make_cycle(cam, store, *model)
        cycle.arm()
        list(cycle.run(contexts(), count=1))
        write_file(inbox, "resent.tif", data)  # the vendor software re-sent it
        with pytest.raises(CaptureTimeout):
            cam.grab(0.4)
        assert recorded_files(store) == ["first.tif"]
    assert sorted(os.listdir(inbox / "done")) == ["first.tif", "resent.tif.duplicate"]


def test_wrong_size_is_quarantined_and_the_next_file_comes(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_file(inbox, "a_small.tif", write_tiff(np.zeros((64, 64), np.uint16)))
    cam = camera(inbox, expected_width=256, expected_height=256)
    with pytest.raises(BadImage, match="a_small.tif: size 64x64, expected 256x256"):
        cam.grab(1.0)
    write_file(inbox, "b_ok.tif", write_tiff(radiograph(3)))
    assert cam.grab(1.0).source == "b_ok.tif"


def test_missing_or_unwritable_folder_is_a_config_error(tmp_path):
    from station.capture.base import CameraConfigError

    with pytest.raises(CameraConfigError, match="does not exist"):
        XrayFolderCamera(tmp_path / "nope").open()
    with pytest.raises(CameraConfigError, match="formats"):
        XrayFolderCamera(tmp_path, formats=("jpeg",))
    watcher = FolderWatcher(tmp_path)
    with pytest.raises(OSError, match="not open"):
        watcher.next_claim(0.1)


def test_delete_after_inspection_and_ignored_sidecars(tmp_path, model):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_file(inbox, "part.xml", b"<meta/>")  # a vendor's sidecar, left alone
    write_file(inbox, "part.tif", write_tiff(radiograph(5)))
    with StationStore(tmp_path / "data") as store:
        cam = camera(inbox, after="delete", ignore=("*.xml",), recorded=recorded_original(store))
        cycle = make_cycle(cam, store, *model)
        cycle.arm()
        list(cycle.run(contexts(), count=1))
        with pytest.raises(CaptureTimeout):
            cam.grab(0.2)
        assert recorded_files(store) == ["part.tif"]
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == ["part.xml"]
    assert os.listdir(inbox / "done") == [] and cam.watcher.quarantined() == []


def test_an_idle_folder_records_nothing_and_stop_ends_the_wait(tmp_path, model):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cam = camera(inbox)
    with StationStore(tmp_path / "data") as store:
        cycle = make_cycle(cam, store, *model, timeout_s=0.1)
        cycle.arm()
        outs: list = []
        runner = threading.Thread(target=lambda: outs.extend(cycle.run(contexts(), count=3)))
        runner.start()
        time.sleep(0.6)  # several capture timeouts with nothing landing: no part, no record
        assert store.count() == 0
        writer = SimXrayWriter(inbox, SPEC)
        writer.write_part(1, defect=None)
        writer.write_part(2, defect=None)
        deadline = time.monotonic() + 10
        while store.count() < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        cycle.stop()  # while waiting for the third part
        runner.join(timeout=5)
        assert not runner.is_alive()
        assert [o.fault for o in outs] == [None, None] and store.count() == 2
        assert cycle.state.value == "idle"


def test_replay_watched_folder_config_builds_this_driver_for_pngs(tmp_path):
    from station.capture.factory import make_camera, trigger_mode
    from station.config import parse_config

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cfg = parse_config(f"schema_version: 1\ncamera: {{type: replay, folder: '{inbox}', trigger: watched_folder}}\n")
    cam = make_camera(cfg.camera)
    assert isinstance(cam, XrayFolderCamera) and trigger_mode(cfg.camera) is TriggerMode.WATCHED_FOLDER
    cam.open()
    cam.arm(trigger_mode(cfg.camera))
    colour = np.dstack([np.full((20, 30), v, np.uint8) for v in (10, 20, 30)])
    deep = np.arange(600, dtype=np.uint16).reshape(20, 30) * 100
    write_file(inbox, "a_colour.png", cv2.imencode(".png", colour)[1].tobytes())
    write_file(inbox, "b_deep.png", cv2.imencode(".png", deep)[1].tobytes())
    first, second = cam.grab(3.0), cam.grab(3.0)
    assert first.pixel_format == "BGR8" and np.array_equal(first.image, colour)
    assert second.pixel_format == "Mono16" and np.array_equal(second.image, deep)




def test_an_interlock_opened_while_waiting_for_a_file_takes_nothing_until_resume(tmp_path, model):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cam = camera(inbox)
    with StationStore(tmp_path / "data") as store:
        cycle = make_cycle(cam, store, *model, timeout_s=30.0)  # the loop sits inside grab()
        cycle.arm()
        outs: list = []
        runner = threading.Thread(target=lambda: outs.extend(cycle.run(contexts(), count=1)))
        runner.start()
        try:
            assert wait_for(lambda: cycle.state.value == "armed")  # waiting for a part is armed
            time.sleep(0.1)  # let the loop get into grab()
            cycle.suspend("door open", source="interlock")
            write_file(inbox, "a.tif", write_tiff(radiograph(7)))
            assert wait_for(lambda: cycle.state.value == "suspended")
            time.sleep(0.3)  # many settle times: a running watcher would have taken the file
            assert store.count() == 0 and (inbox / "a.tif").exists() and cam.watcher.in_processing() == []
            cycle.resume(source="interlock")
            runner.join(timeout=10)
            assert not runner.is_alive()
        finally:
            cycle.stop()
            runner.join(timeout=10)
        assert store.count() == 1 and recorded_files(store) == ["a.tif"]
        assert [o.fault for o in outs] == [None]


def _malformed_frames_dicom(image: np.ndarray) -> bytes:
    """A DICOM whose NumberOfFrames (IS) is not a number: a detector's broken writer."""
    ds = pydicom.dcmread(io.BytesIO(write_dicom(image)))
    ds.NumberOfFrames = 1
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    good = b"\x28\x00\x08\x00IS\x02\x001 "
    assert buf.getvalue().count(good) == 1
    return buf.getvalue().replace(good, b"\x28\x00\x08\x00IS\x02\x00x ")


@pytest.mark.filterwarnings("ignore:Invalid value for VR IS:UserWarning")  # pydicom says what we test
def test_a_dicom_with_a_malformed_frame_count_is_quarantined_and_the_cycle_carries_on(tmp_path, model):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cam = camera(inbox, formats=("tiff", "dicom"))
    bad = _malformed_frames_dicom(radiograph(3))
    long_name = "n" * 240 + ".dcm"  # its reason file's name would exceed NAME_MAX
    with StationStore(tmp_path / "data") as store:
        cycle = make_cycle(cam, store, *model)
        cycle.arm()
        write_file(inbox, "bad.dcm", bad)
        first = next(cycle.run(contexts("A"), count=1))
        write_file(inbox, long_name, bad)
        second = next(cycle.run(contexts("B"), count=1))
        write_file(inbox, "good.dcm", write_dicom(radiograph(4)))
        third = next(cycle.run(contexts("C"), count=1))
        assert [o.fault["kind"] for o in (first, second)] == ["bad_image", "bad_image"]
        assert "NumberOfFrames" in first.fault["message"] and third.fault is None
        assert store.count() == 3 and recorded_files(store) == ["good.dcm"]
    reasons = cam.watcher.quarantined()
    assert [r["file"] for r in reasons] == ["bad.dcm", long_name]
    assert all("NumberOfFrames" in r["reason"] for r in reasons)
    for r in reasons:
        assert (inbox / "quarantine" / r["quarantined_as"]).read_bytes() == bad
    assert cam.watcher.in_processing() == [] and cycle.state.value == "armed"


def test_the_recorder_stores_the_bytes_that_were_claimed_not_the_file_as_it_is_later(tmp_path, model):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cam = camera(inbox)
    data = write_tiff(radiograph(9))
    with StationStore(tmp_path / "data") as store:
        cycle = make_cycle(cam, store, *model)

        def meddle(old, new):  # someone edits the claimed file while the part is being checked
            if new.value == "checking":
                (path,) = list(cam.watcher.processing.iterdir())
                path.write_bytes(b"overwritten")

        cycle.add_state_listener(meddle)
        cycle.arm()
        write_file(inbox, "m.tif", data)
        out = next(cycle.run(contexts(), count=1))
        doc = store.get(out.inspection_id)
        assert (store.data_dir / doc["meta"]["original"]["stored"]).read_bytes() == data
        assert "data" not in doc["meta"]["original"]
