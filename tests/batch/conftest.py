"""A recorded station (sim camera, 640x512, variation model) once per session, and helpers
to run ``linestation batch`` in-process or as a real subprocess."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from station.config import parse_config
from station.runtime import StationRuntime
from station.store.station_store import StationStore

ROOT = Path(__file__).resolve().parents[2]
STATION = {
    "schema_version": 1,
    "station": {"plant": "p1", "line": "l1", "station": "s1", "lot": "LOT-B"},
    "camera": {"type": "sim", "width": 640, "height": 512, "seed": 5, "defect_rate": 0.35, "timeout_s": 0.5},
    "detector": {"type": "variation", "train_images": 30},
    "recipe": {"name": "rb"},
    "calibration": {"calibration_images": 16},
}
RECORDED = 16


@pytest.fixture(scope="session")
def station_data(tmp_path_factory) -> Path:
    """A data dir with a calibration profile, an active model and RECORDED inspections."""
    root = tmp_path_factory.mktemp("batch-station") / "data"
    rt = StationRuntime.open(parse_config(yaml.safe_dump(STATION), "batch.yaml"), root)
    try:
        list(rt.run(count=RECORDED))
    finally:
        rt.close()
    return root


@pytest.fixture(scope="session")
def recorded_images(station_data) -> list[Path]:
    """The stored images of the recorded inspections (not their heatmaps)."""
    store = StationStore(station_data, recover=False)
    try:
        with store.reader.connect() as conn:
            rels = [r[0] for r in conn.exec_driver_sql("SELECT image_path FROM inspections ORDER BY id")]
        return [store.images.path_of(r) for r in rels]
    finally:
        store.close()


def copy_images(images: list[Path], dest: Path, copies: int = 1) -> list[Path]:
    """``copies`` x the images under new names (each file is its own image id)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for c in range(copies):
        for i, src in enumerate(images):
            p = dest / f"part-{c:03d}-{i:03d}.png"
            shutil.copyfile(src, p)
            out.append(p)
    return out


def copy_images_to_shards(images: list[Path], parent: Path, shards: int = 2) -> Path:
    """``images`` copied into a folder under ``parent`` whose paths give every one of
    ``shards`` at least one image (the shard is a hash of the path, so a random tmp path
    can leave a shard empty - and a test of that shard vacuous)."""
    from station.batch.inputs import list_local, shard_of

    for n in range(50):
        dest = parent / f"in{n}"
        copy_images(images, dest)
        if len({shard_of(i, shards) for i in list_local(str(dest), recipe="r", station="s")}) == shards:
            return dest
        shutil.rmtree(dest)
    raise AssertionError(f"no folder under {parent} spreads {len(images)} image(s) over {shards} shards")


def result_rows(out: Path) -> list[dict]:
    rows = []
    for path in sorted(out.glob("results/date=*/station=*/recipe=*/*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def run_summary(out: Path, run_id: str) -> dict:
    return json.loads((out / f"summary/run={run_id}/summary.json").read_text())


def batch_argv(data_dir: Path, *args: object) -> list[str]:
    return [sys.executable, "-m", "station.cli", "--data-dir", str(data_dir), "batch", *map(str, args)]


@pytest.fixture
def run_batch_cli() -> Callable[..., subprocess.CompletedProcess]:
    """Run ``linestation batch`` as a subprocess (bounded in time) and return its result."""
    def run(data_dir: Path, *args: object, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **(env or {})}
        return subprocess.run(batch_argv(data_dir, *args), capture_output=True, text=True, timeout=timeout,
                              env=full_env, cwd=ROOT)
    return run
