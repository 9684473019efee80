"""Interruption and resume (SIGKILL of a real process, torn last line), and sharding by
AWS_BATCH_JOB_ARRAY_INDEX: every image exactly once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter

import pytest

from conftest import ROOT, batch_argv, copy_images, result_rows, run_summary

from station.batch.summary import merge


def _lines(out) -> int:
    return sum(p.read_bytes().count(b"\n") for p in out.glob("results/**/*.jsonl"))


def test_sigkill_mid_run_then_resume_inspects_every_image_exactly_once(tmp_path, station_data, recorded_images,
                                                                        run_batch_cli):
    images = copy_images(recorded_images, tmp_path / "in", copies=12)  # 192 images
    out = tmp_path / "out"
    args = [tmp_path / "in", "--model", "active", "--out", out, "--recipe", "rb", "--workers", "2",
            "--run-id", "k1", "--no-report"]
    proc = subprocess.Popen(batch_argv(station_data, *args), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while _lines(out) < 40 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the parent and its workers, no clean-up
        proc.wait(10)
        proc.stderr.close()
    before = result_rows(out)
    assert 40 <= len(before) < len(images)
    # a write cut short (as by a power cut): a torn last line the resume must cut off
    (result_file,) = out.glob("results/**/k1-0.jsonl")
    with open(result_file, "ab") as f:
        f.write(b'{"run_id":"k1","shard":0,"image_id":"torn')

    res = run_batch_cli(station_data, *args, "--resume")
    assert res.returncode == 0, res.stderr
    assert "cut a torn last line" in res.stderr
    rows = result_rows(out)
    counts = Counter(r["image"] for r in rows)
    assert set(counts) == {str(p.resolve()) for p in images}
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1][:3]
    summary = run_summary(out, "k1")
    assert summary["complete"] and summary["images"] == len(images)
    shard = json.loads((out / "summary/run=k1/shard=0.json").read_text())
    assert shard["resumed_from"] == len(before) and shard["inspected_this_session"] == len(images) - len(before)

    again = run_batch_cli(station_data, *args)  # the same run id without --resume: refused, nothing added
    assert again.returncode == 1 and "pass --resume" in again.stderr
    assert len(result_rows(out)) == len(images)


def test_array_index_shards_process_every_image_exactly_once(tmp_path, station_data, recorded_images):
    images = copy_images(recorded_images, tmp_path / "in", copies=2)  # 32 images
    out = tmp_path / "out"
    procs = []
    for index in range(3):
        env = {**os.environ, "AWS_BATCH_JOB_ARRAY_INDEX": str(index)}
        procs.append(subprocess.Popen(
            batch_argv(station_data, tmp_path / "in", "--model", "active", "--out", out, "--recipe", "rb",
                       "--shards", 3, "--run-id", "s3x", "--no-report"),
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    rows = result_rows(out)
    counts = Counter(r["image"] for r in rows)
    assert set(counts) == {str(p.resolve()) for p in images} and max(counts.values()) == 1
    per_shard = Counter(r["shard"] for r in rows)
    assert set(per_shard) == {0, 1, 2}
    for path in out.glob("results/**/*.jsonl"):  # each shard wrote only its own file
        shard = int(path.stem.rsplit("-", 1)[1])
        assert {json.loads(line)["shard"] for line in path.read_text().splitlines()} == {shard}
    shards = [json.loads((out / f"summary/run=s3x/shard={i}.json").read_text()) for i in range(3)]
    merged = merge(shards)
    assert merged["complete"] and merged["images"] == len(images) and merged["shards_present"] == [0, 1, 2]
    assert sum(merged["decisions"].values()) == len(images)
    assert len({json.dumps(s["model"], sort_keys=True) for s in shards}) == 1


@pytest.mark.parametrize("target", ["parent", "process-group"])
def test_sigterm_finishes_in_flight_images_then_resume_completes(tmp_path, station_data, recorded_images,
                                                                 run_batch_cli, target):
    """SIGTERM to the parent only, or to the whole process group (docker stop, AWS Batch,
    ``kill -- -PGID``): the workers ignore it and the parent stops them gracefully."""
    images = copy_images(recorded_images, tmp_path / "in", copies=6)  # 96 images
    out = tmp_path / "out"
    args = [tmp_path / "in", "--model", "active", "--out", out, "--recipe", "rb", "--workers", "2",
            "--run-id", "t1", "--no-report"]
    proc = subprocess.Popen(batch_argv(station_data, *args), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 90
    while _lines(out) < 20 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    # freeze the whole run while the signal is sent, so a loaded machine cannot let it finish
    # the remaining images between "20 rows seen" and the SIGTERM (it is delivered on SIGCONT)
    os.killpg(proc.pid, signal.SIGSTOP)
    assert proc.poll() is None, "the run finished before it could be stopped"
    if target == "parent":
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGTERM)  # the parent and both workers
    os.killpg(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "SIGTERM" in err and "--resume --run-id t1" in err
    partial = json.loads((out / "summary/run=t1/shard=0.json").read_text())
    assert partial["interrupted"] and not partial["complete"]
    assert partial["images"] == len(result_rows(out)) < len(images)

    res = run_batch_cli(station_data, *args, "--resume")
    assert res.returncode == 0, res.stderr
    counts = Counter(r["image"] for r in result_rows(out))
    assert len(counts) == len(images) and max(counts.values()) == 1
    assert run_summary(out, "t1")["complete"]
