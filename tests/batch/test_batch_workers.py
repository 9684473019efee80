"""Worker sizing: ``--workers auto`` and the thread budget of the in-process worker."""
from __future__ import annotations

import json

import pytest
from conftest import copy_images
from threadpoolctl import threadpool_info

from station.batch.workers import IMAGES_PER_EXTRA_WORKER, auto_workers, usable_cpus
from station.cli import main
from station.commands.batch_cmd import _workers


def test_auto_workers_one_per_core_but_not_for_a_short_run():
    cpus = usable_cpus()
    assert auto_workers(0) == 1
    assert auto_workers(IMAGES_PER_EXTRA_WORKER - 1) == 1  # a second process would not pay off
    assert auto_workers(IMAGES_PER_EXTRA_WORKER * 1000) == cpus
    assert auto_workers(IMAGES_PER_EXTRA_WORKER * 1000, threads=cpus) == 1  # threads use the cores
    assert auto_workers(2 * IMAGES_PER_EXTRA_WORKER) == min(2, cpus)


def test_workers_argument():
    assert _workers("auto") is None and _workers("AUTO") is None
    assert _workers("3") == 3
    for bad in ("0", "-1", "two"):
        with pytest.raises(Exception, match="must be >= 1|neither a number"):
            _workers(bad)


def test_in_process_worker_caps_blas_threads_and_restores_them(tmp_path, station_data, recorded_images, monkeypatch):
    """``--workers 1 --threads 1`` means one BLAS thread too (an unlimited pool would spin on
    every core), restored afterwards; the summary says how many workers ran."""
    import station.batch.run as run_mod

    def blas_threads() -> set[int]:
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

    before = blas_threads()
    seen: list[set[int]] = []
    real = run_mod.run_in_process

    def watching(spec, items, emit, stop):
        return real(spec, items, lambda row: (seen.append(blas_threads()), emit(row)), stop)

    monkeypatch.setattr(run_mod, "run_in_process", watching)
    folder = tmp_path / "in"
    copy_images(recorded_images[:3], folder)
    code = main(["--data-dir", str(station_data), "batch", str(folder), "--model", "active", "--out",
                 str(tmp_path / "out"), "--recipe", "rb", "--run-id", "t1", "--no-report"])
    assert code == 0
    shard = json.loads((tmp_path / "out" / "summary" / "run=t1" / "shard=0.json").read_text())
    assert shard["workers"] == 1 and shard["images"] == 3  # auto: 3 images are not worth a second process
    assert len(seen) == 3 and all(s == {1} for s in seen), seen
    assert blas_threads() == before
