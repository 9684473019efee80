"""Worker sizing: ``--workers auto`` and the thread budget of the in-process worker."""
from __future__ import annotations

import json

import pytest
from conftest import copy_images
from threadpoolctl import threadpool_info

from station.batch.workers import IMAGES_PER_EXTRA_WORKER, auto_workers, cgroup_cpu_limit, usable_cpus
from station.cli import main
from station.commands.batch_cmd import _workers


def test_auto_workers_one_per_core_but_not_for_a_short_run():
    cpus = usable_cpus()
    assert auto_workers(0) == 1
    assert auto_workers(IMAGES_PER_EXTRA_WORKER - 1) == 1  # a second process would not pay off
    assert auto_workers(IMAGES_PER_EXTRA_WORKER * 1000) == cpus
    assert auto_workers(IMAGES_PER_EXTRA_WORKER * 1000, threads=cpus) == 1  # threads use the cores
    assert auto_workers(2 * IMAGES_PER_EXTRA_WORKER) == min(2, cpus)
    assert auto_workers(2 * IMAGES_PER_EXTRA_WORKER, cpus=8) == 2
    assert auto_workers(100 * IMAGES_PER_EXTRA_WORKER, cpus=8, threads=2) == 4


def test_cgroup_quota_caps_the_cores(tmp_path):
    """A container's CPU quota (cgroup v2 cpu.max, v1 cfs files) caps the worker count."""
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(v2) is None
    (v2 / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs
    assert cgroup_cpu_limit(v2) == 1.5
    assert usable_cpus(v2) == 1
    (v2 / "cpu.max").write_text("50000 100000\n")  # a 0.5 vCPU task still gets one worker
    assert usable_cpus(v2) == 1
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(v1.parent) is None
    (v1 / "cpu.cfs_quota_us").write_text("200000\n")
    assert cgroup_cpu_limit(v1.parent) == 2.0
    assert cgroup_cpu_limit(tmp_path / "missing") is None
    assert auto_workers(10_000, cpus=usable_cpus(v1.parent)) == min(2, usable_cpus())
    (v2 / "cpu.max").write_text("garbage\n")
    assert cgroup_cpu_limit(v2) is None  # unreadable: no cap rather than a crash


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
