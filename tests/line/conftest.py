"""A station with its line servers (Modbus TCP, OPC UA) on free 127.0.0.1 ports, per test.

Calibration and the model are made once per session in a template data dir (recipe ``a``);
recipe ``b`` gets a calibration profile of its own (the same golden reference, saved under
its name), recipe ``c`` has none. Each test copies the template and owns its database.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from line_config import SERIAL, line_config

from calibration.profile import ProfileStore
from servers import free_ports
from station.runtime import StationRuntime


@pytest.fixture(scope="session")
def line_template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("line-template")
    StationRuntime.open(line_config(), root, arm=False).close()
    profiles = ProfileStore(root / "calibration")
    a = profiles.latest(SERIAL, "a")
    profiles.save(a.model_copy(update={"recipe": "b", "version": 0, "created_by": "test",
                                       "notes": "recipe b: same part, stricter decision"}))
    return root


@pytest.fixture
def make_line_station(tmp_path, line_template) -> Iterator[Callable[..., StationRuntime]]:
    """``make(modbus=True, opcua=False, **kw)``: a station whose line servers listen on free ports."""
    opened: list[StationRuntime] = []

    def make(modbus: bool = True, opcua: bool = False, **kw: object) -> StationRuntime:
        data_dir = tmp_path / f"data{len(opened)}"
        for part in ("calibration", "models"):
            shutil.copytree(line_template / part, data_dir / part)
        mb, ua_port = free_ports(2)
        rt = StationRuntime.open(line_config(mb if modbus else None, ua_port if opcua else None, **kw), data_dir)
        rt.modbus_port, rt.opcua_port = mb, ua_port  # for the test's clients
        opened.append(rt)
        return rt

    yield make
    for rt in opened:
        rt.close()
