"""An idle watched folder is a quiet cycle: waiting for a part stays ARMED and announces
nothing, however many capture timeouts pass; a part that lands is still inspected, and an
interlock or a stop during the wait still takes effect at once.

Real driver on a real folder, the station's own cycle and recorder, a SQLite store.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from station.capture.sim_xray import XrayPartRenderer
from station.capture.tiff_io import write_tiff
from station.capture.xray_camera import XrayFolderCamera
from station.inspect.states import CycleState
from station.store.station_store import StationStore
from xray_helpers import SPEC, contexts, folder_camera, make_cycle, recorded_files, wait_for, write_file, xray_model

S = CycleState


@pytest.fixture(scope="module")
def model():
    return xray_model()


def _radiograph(i: int) -> bytes:
    return write_tiff(XrayPartRenderer(SPEC).render(i, defect=None)[0])




class _Changes(list):
    """Every state change the cycle announces, as (old, new)."""

    def __call__(self, old: CycleState, new: CycleState) -> None:
        self.append((old, new))


def _camera(folder, cls=XrayFolderCamera) -> XrayFolderCamera:
    return folder_camera(folder, cls=cls, arm=False)


def test_idle_folder_announces_no_state_change_and_suspend_still_holds(tmp_path, model):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cam = _camera(inbox)
    with StationStore(tmp_path / "data") as store:
        cycle = make_cycle(cam, store, *model, timeout_s=0.1)
        changes = _Changes()
        cycle.add_state_listener(changes)
        cycle.arm()
        outs: list = []
        runner = threading.Thread(target=lambda: outs.extend(cycle.run(contexts(), count=2)))
        runner.start()
        try:
            time.sleep(1.0)  # ten capture timeouts with nothing landing
            assert changes == [(S.IDLE, S.ARMED)] and cycle.state is S.ARMED
            assert store.count() == 0

            write_file(inbox, "a.tif", _radiograph(1))  # a part arrives: inspected as ever
            assert wait_for(lambda: store.count() == 1)
            assert wait_for(lambda: cycle.state is S.ARMED)
            first = changes[1:]
            assert first[0] == (S.ARMED, S.CAPTURING) and first[-1] == (S.RECORDING, S.ARMED)

            del changes[:]
            time.sleep(0.5)  # idle again: quiet again
            assert changes == []

            cycle.suspend("door open", source="interlock")  # during the idle wait
            assert changes == [(S.ARMED, S.SUSPENDED)] and cycle.state is S.SUSPENDED
            write_file(inbox, "b.tif", _radiograph(2))
            time.sleep(0.5)  # ten settle times: a running watcher would have taken it
            assert store.count() == 1 and (inbox / "b.tif").exists() and cam.watcher.in_processing() == []
            assert changes == [(S.ARMED, S.SUSPENDED)]  # held, and quiet while held

            cycle.resume(source="interlock")
            runner.join(timeout=10)
            assert not runner.is_alive()
        finally:
            cycle.stop()
            runner.join(timeout=10)
        assert [o.fault for o in outs] == [None, None]
        assert recorded_files(store) == ["a.tif", "b.tif"]
        assert changes[1:3] == [(S.SUSPENDED, S.ARMED), (S.ARMED, S.CAPTURING)]


def test_stop_ends_an_idle_wait_without_waiting_out_the_timeout(tmp_path, model):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cam = _camera(inbox)
    with StationStore(tmp_path / "data") as store:
        cycle = make_cycle(cam, store, *model, timeout_s=600.0)  # a very long capture timeout
        changes = _Changes()
        cycle.add_state_listener(changes)
        cycle.arm()
        outs: list = []
        runner = threading.Thread(target=lambda: outs.extend(cycle.run(contexts(), count=1)), daemon=True)
        runner.start()
        time.sleep(0.2)
        cycle.stop()
        runner.join(timeout=30)  # far below the 600 s timeout: stop cut the wait short
        alive = runner.is_alive()
        if alive:
            cam.disarm()  # end the driver's own wait so a failure does not hang the run
        assert not alive
        assert outs == [] and store.count() == 0
        assert changes == [(S.IDLE, S.ARMED), (S.ARMED, S.IDLE)]


class _InterlockRacesTheClaim(XrayFolderCamera):
    """The real driver; the interlock closes right after a file was claimed, before the
    cycle could begin the part (the narrowest window there is)."""

    cycle = None

    def grab(self, timeout_s: float = 1.0):
        frame = super().grab(timeout_s)
        if self.cycle is not None:
            self.cycle.suspend("door open", source="interlock")
        return frame


def test_a_file_claimed_as_the_interlock_closes_is_inspected_after_the_resume(tmp_path, model):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cam = _camera(inbox, _InterlockRacesTheClaim)
    data = _radiograph(3)
    with StationStore(tmp_path / "data") as store:
        cycle = make_cycle(cam, store, *model, timeout_s=0.1)
        cam.cycle = cycle
        changes = _Changes()
        cycle.add_state_listener(changes)
        cycle.arm()
        write_file(inbox, "c.tif", data)
        outs: list = []
        runner = threading.Thread(target=lambda: outs.extend(cycle.run(contexts(), count=1)))
        runner.start()
        try:
            assert wait_for(lambda: cam.watcher.in_processing() == ["c.tif"])
            time.sleep(0.3)
            # held with the claimed part kept, not inspected and not lost
            assert cycle.state is S.SUSPENDED and store.count() == 0
            assert changes == [(S.IDLE, S.ARMED), (S.ARMED, S.SUSPENDED)]
            cam.cycle = None
            cycle.resume(source="interlock")
            runner.join(timeout=10)
            assert not runner.is_alive()
        finally:
            cycle.stop()
            runner.join(timeout=10)
    assert [o.fault for o in outs] == [None] and recorded_files(store) == ["c.tif"]
    assert np.array_equal(outs[0].frame.image, XrayPartRenderer(SPEC).render(3, defect=None)[0])
    assert changes[2:4] == [(S.SUSPENDED, S.ARMED), (S.ARMED, S.CAPTURING)]
    assert cam.watcher.in_processing() == []
