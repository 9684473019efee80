"""One process per run and shard: a second ``linestation batch`` on the same run + shard is
refused naming the holder, instead of appending rows to the same files. Two real
subprocesses; the first is frozen (SIGSTOP) while it holds the lock, so the overlap does
not depend on timing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import yaml
from conftest import ROOT, STATION, batch_argv, copy_images, result_rows

from station.cli import main


def _wait_for_lock(path, pid: int, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().startswith(f"pid {pid} "):
            return
        assert proc.poll() is None, f"the first batch exited early ({proc.returncode})"
        time.sleep(0.02)
    raise AssertionError(f"{path}: not locked by {pid} within {timeout_s} s")


def test_a_second_process_on_the_same_run_and_shard_is_refused(tmp_path, station_data, recorded_images,
                                                               capsys):
    images = copy_images(recorded_images, tmp_path / "in", copies=6)
    out, run_id = tmp_path / "out", "locked-run"
    args = [tmp_path / "in", "--model", "active", "--out", out, "--run-id", run_id, "--recipe", "rb",
            "--station", "s1", "--no-report"]
    lock = out / f"summary/run={run_id}/.shard=0.lock"
    first = subprocess.Popen(batch_argv(station_data, *args), cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_lock(lock, first.pid, first)
        os.kill(first.pid, signal.SIGSTOP)  # it holds the lock, frozen mid-run
        second = subprocess.run(batch_argv(station_data, *args, "--resume"), cwd=ROOT, capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 1
        assert f"run {run_id} shard 0 is being run by pid {first.pid}" in second.stderr
        os.kill(first.pid, signal.SIGCONT)
        _, err = first.communicate(timeout=180)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGCONT)
            first.kill()
            first.wait(timeout=10)
    rows = result_rows(out)
    assert sorted(r["image"] for r in rows) == sorted(str(p.resolve()) for p in images)  # each exactly once

    # the lock went with the process: the run can be resumed (nothing left to do) ...
    assert main(["--data-dir", str(station_data), "batch", *map(str, args), "--resume"]) == 0
    # ... but not with another decision policy than it was started with
    cfg = tmp_path / "other.yaml"
    cfg.write_text(yaml.safe_dump({**STATION, "recipe": {"name": "rb", "decision": {"pass_min_confidence": 0.9}}}))
    capsys.readouterr()
    assert main(["--data-dir", str(station_data), "batch", *map(str, args), "--resume", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "other inspection settings" in err and "'pass_min_confidence': 0.9" in err
    for flags, said in ((["--profile", "SIM-0001/rb@v99"], "--profile SIM-0001/rb@v99"),
                        (["--date", "2001-01-01"], "not --date 2001-01-01")):
        assert main(["--data-dir", str(station_data), "batch", *map(str, args), "--resume", *flags]) == 1
        assert said in capsys.readouterr().err
    assert len(result_rows(out)) == len(images)
    manifest = json.loads((out / f"summary/run={run_id}/run.json").read_text())
    assert manifest["settings"]["policy"] == {"reject_min_confidence": 0.75, "pass_min_confidence": 0.6}


def test_shard_lock_is_durable_try_lock_file_with_the_holder_named(tmp_path):
    """The lock is station.durable.try_lock_file's (one flock implementation): the file holds
    "pid N on HOST", a second open of it is refused naming that, and release frees it."""
    import socket

    import pytest

    from station.batch.shard_lock import ShardLock, ShardLocked

    first = ShardLock.acquire(tmp_path, "r1", 2)
    holder = f"pid {os.getpid()} on {socket.gethostname()}"
    assert first.path.read_text() == holder + "\n"
    with pytest.raises(ShardLocked, match=f"run r1 shard 2 is being run by {holder} "):
        ShardLock.acquire(tmp_path, "r1", 2)
    ShardLock.acquire(tmp_path, "r1", 3).release()  # another shard: its own lock
    first.release()
    with ShardLock.acquire(tmp_path, "r1", 2) as again:
        assert again.path == first.path
