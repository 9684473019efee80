"""Fixtures for the sync tests: a real S3 server and a real moto server for the session.

The S3 server (SeaweedFS) and the moto server are started once per session; a test that
kills or breaks a server starts its own. Every test gets its own bucket, topic, queues
and state machine, so counts are the test's alone (helpers: ``sync_helpers.py``).
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sync_helpers import AwsRig, make_rig, next_name, sync_config

from servers import MotoServer, S3Server, start_moto, start_s3

from station.runtime import StationRuntime


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    srv = start_s3(tmp_path_factory.mktemp("s3"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory) -> Iterator[MotoServer]:
    srv = start_moto(tmp_path_factory.mktemp("moto"))
    yield srv
    srv.stop()


@pytest.fixture
def rig(moto_server) -> AwsRig:
    return make_rig(moto_server)


@pytest.fixture
def bucket(s3_server) -> str:
    name = f"ls-{next_name()}-{os.getpid()}"
    s3_server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def station_template(tmp_path_factory) -> Path:
    """A data dir whose calibration and model were bootstrapped once (sim camera)."""
    root = tmp_path_factory.mktemp("station-template")
    StationRuntime.open(sync_config(), root, arm=False).close()
    return root


@pytest.fixture
def make_station(station_template) -> Iterator[Callable[..., StationRuntime]]:
    """Open a station on the simulated camera in ``data_dir`` (model and calibration copied)."""
    opened: list[StationRuntime] = []

    def make(data_dir: Path, cfg=None) -> StationRuntime:
        if not (data_dir / "models").exists():
            for part in ("calibration", "models"):
                shutil.copytree(station_template / part, data_dir / part)
        rt = StationRuntime.open(cfg or sync_config(), data_dir)
        opened.append(rt)
        return rt

    yield make
    for rt in opened:
        rt.close()
