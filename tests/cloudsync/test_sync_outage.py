"""Outages against real servers: down at start, killed mid-upload, 500s and throttling,
wrong credentials, the sync process SIGKILLed during a drain. After each one every
record is delivered exactly once, nothing is pending, nothing is lost."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from sync_helpers import (
    assert_exactly_once,
    expected_counts,
    full_config,
    record_inspections,
    running_sync,
    wait_drained,
    wait_until,
    write_config,
)

from cloudsync.status import sync_status
from servers import (
    BIN,
    HTTP_500,
    S3_SLOWDOWN,
    SFN_THROTTLED,
    SNS_THROTTLED,
    FaultProxy,
    S3Server,
)
from station.cli import main as cli_main
from station.store.station_store import StationStore


def _attempts(data_dir, sink):
    with StationStore(data_dir, recover=False) as store, store.reader.connect() as conn:
        return [r[0] for r in conn.exec_driver_sql("SELECT attempts FROM outbox WHERE sink = ?", (sink,))]


def test_servers_down_at_start_station_keeps_inspecting_then_queue_drains(tmp_path, make_station, rig):
    s3 = S3Server(tmp_path / "s3").reserve_ports()  # its address is known, nothing listens yet
    moto_link = FaultProxy(rig.moto.port).start()
    moto_link.stop()  # the network to AWS is down: connection refused
    bucket = "outage-bucket"
    s3.bucket = bucket
    data = tmp_path / "data"
    cfg = full_config(s3, bucket, rig, moto_url=moto_link.endpoint_url, offline_after_failures=2)
    station = make_station(data, cfg.model_copy(update={"camera": cfg.camera.model_copy(update={"defect_rate": 0.5})}))
    try:
        with running_sync(cfg, data):
            outcomes = list(station.run(count=12))
            assert len(outcomes) == 12 and all(o.inspection_id for o in outcomes)  # the line kept running
            wait_until(lambda: sync_status(data)["sinks"].get("s3", {}).get("state") == "offline", 30, "s3 offline")
            st = sync_status(data)
            assert st["sinks"]["s3"]["pending"] + st["sinks"]["s3"]["in_flight"] == expected_counts(data)["s3"]
            assert st["sinks"]["s3"]["delivered"] == 0 and "Could not connect" in (st["sinks"]["s3"]["last_error"] or "")
            assert st["sinks"]["s3"]["oldest_pending_age_s"] > 0
            outcomes += list(station.run(count=6))  # still inspecting while offline

            s3.start()  # the network comes back
            moto_link.restart()
            wait_drained(data, timeout_s=90)
            st = sync_status(data)
        assert st["sinks"]["s3"]["state"] == "online" and st["sinks"]["sns"]["delivered"] >= 1
        assert station.store.count() == 18
        assert_exactly_once(data, s3, bucket, rig)
    finally:
        moto_link.stop()
        s3.stop()


def test_s3_server_killed_in_the_middle_of_uploads(tmp_path, rig):
    s3 = S3Server(tmp_path / "s3", bucket="killed-bucket").start()
    try:
        data = tmp_path / "data"
        record_inspections(data, 40, size=320)  # ~100 kB PNGs
        # A bandwidth cap stretches the drain so the kill lands in the middle of it.
        cfg = full_config(s3, s3.bucket, rig, bandwidth_bytes_per_s=1_500_000)
        with running_sync(cfg, data):
            wait_until(lambda: sync_status(data)["sinks"].get("s3", {}).get("delivered", 0) >= 30, 60, "uploads")
            s3.server.kill()  # SIGKILL: connections cut mid-request
            done_at_kill = sync_status(data)["sinks"]["s3"]["delivered"]
            time.sleep(1.0)
            s3.start()
            wait_drained(data, timeout_s=90)
        assert done_at_kill < expected_counts(data)["s3"]
        assert_exactly_once(data, s3, s3.bucket, rig)
    finally:
        s3.stop()


def test_http_500s_and_throttling_are_retried_until_delivered(tmp_path, s3_server, bucket, rig):
    s3_link = FaultProxy(s3_server.s3_port).start()
    sfn_link = FaultProxy(rig.moto.port).start()
    sns_link = FaultProxy(rig.moto.port).start()
    try:
        s3_link.plan(16, HTTP_500)  # more in a row than the SDK's own retry absorbs
        sfn_link.fail_every(2, SFN_THROTTLED)
        # Alerts go ten to a PublishBatch: a few requests only, so throttle the first ones
        # (more in a row than the SDK's own retries absorb: the engine must retry them).
        sns_link.plan(4, SNS_THROTTLED)
        data = tmp_path / "data"
        record_inspections(data, 15)
        cfg = full_config(s3_server, bucket, rig, s3_url=s3_link.endpoint_url, moto_url=sfn_link.endpoint_url,
                          sns_url=sns_link.endpoint_url, offline_after_failures=50)
        with running_sync(cfg, data):
            wait_until(lambda: s3_link.faulted >= 16, 30, "S3 500s")
            s3_link.fail_every(4, S3_SLOWDOWN)
            wait_drained(data, timeout_s=90)
        assert s3_link.faulted >= 5 and sfn_link.faulted >= 3 and sns_link.faulted >= 3
        assert max(_attempts(data, "s3")) > 1  # the engine retried rows (the SDK's own retry is one)
        assert_exactly_once(data, s3_server, bucket, rig)
    finally:
        for link in (s3_link, sfn_link, sns_link):
            link.stop()


def test_wrong_credentials_park_dead_letters_and_retry_dead_delivers_them(tmp_path, s3_server, bucket, rig, capsys):
    data = tmp_path / "data"
    record_inspections(data, 6)
    os.environ["LS_TEST_BAD_SECRET"] = "not-the-secret"
    bad = full_config(s3_server, bucket, rig, secret_env="LS_TEST_BAD_SECRET")
    with running_sync(bad, data):
        wait_drained(data, sinks=("s3", "sns"))
    assert cli_main(["--data-dir", str(data), "sync", "status", "--json"]) == 0
    st = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    s3 = st["sinks"]["s3"]
    assert s3["dead"] == 12 and s3["delivered"] == 0
    assert all("SignatureDoesNotMatch" in d["reason"] for d in s3["dead_letters"])
    assert "SignatureDoesNotMatch" in s3["last_error"]
    assert st["sinks"]["stepfunctions"]["pending"] == 6  # waits for its S3 objects, not lost
    assert cli_main(["--data-dir", str(data), "sync", "status"]) == 0
    human = capsys.readouterr().out
    assert "dead s3 #" in human and "SignatureDoesNotMatch" in human

    # Fix the credentials, re-queue the dead letters, run again: everything arrives once.
    assert cli_main(["--data-dir", str(data), "sync", "retry-dead", "--sink", "s3"]) == 0
    assert "12 dead letter(s) of s3 queued again" in capsys.readouterr().out
    with running_sync(full_config(s3_server, bucket, rig), data):
        wait_drained(data)
    assert_exactly_once(data, s3_server, bucket, rig)
    with StationStore(data, recover=False) as store:
        assert store.audit_verify().ok
        assert any(e["action"] == "sync.retry_dead" for e in store.audit_entries())


def _sync_proc(cfg_path, data, log):
    return subprocess.Popen([str(BIN / "linestation"), "--data-dir", str(data), "sync", "--config", str(cfg_path)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def test_sync_process_sigkilled_repeatedly_during_a_drain(tmp_path, s3_server, bucket, rig):
    data = tmp_path / "data"
    record_inspections(data, 60, size=160)
    cfg = full_config(s3_server, bucket, rig, bandwidth_bytes_per_s=400_000, lease_s=5)
    cfg_path = write_config(cfg, tmp_path / "sync.yaml")
    kills, seen = 0, []
    with open(tmp_path / "sync.log", "ab") as log:
        for extra in (0.0, 0.3, 0.15, 0.45):
            before = sync_status(data)["total"]["delivered"]
            proc = _sync_proc(cfg_path, data, log)
            # Kill once this run has delivered something: always in the middle of the drain.
            wait_until(lambda: sync_status(data)["total"]["delivered"] > before, 60, "progress")
            time.sleep(extra)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills += 1
            seen.append(sync_status(data)["total"])
        progress = seen[-1]["delivered"]
        proc = _sync_proc(cfg_path, data, log)
        try:
            wait_drained(data, timeout_s=120)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
    assert 0 < progress < sum(expected_counts(data)[k] for k in ("s3", "sns", "stepfunctions"))
    # S3 objects and executions are idempotent by key / name: exactly once. A standard SNS
    # topic cannot deduplicate: a publish the server took but whose answer the killed
    # process never recorded goes out again (same dedupe_id). That window is the requests
    # in flight at the kill: at most one per SNS worker per kill, never a lost alert.
    assert_exactly_once(data, s3_server, bucket, rig, sns_slack=kills * cfg.sync.sns.workers)


def test_sigterm_finishes_or_hands_back_every_claim(tmp_path, s3_server, bucket, rig):
    data = tmp_path / "data"
    record_inspections(data, 60, size=160)  # ~1.6 MB of images at 100 kB/s: a long drain
    cfg = full_config(s3_server, bucket, rig, bandwidth_bytes_per_s=100_000)
    cfg_path = write_config(cfg, tmp_path / "sync.yaml")
    with open(tmp_path / "sync.log", "ab") as log:
        proc = _sync_proc(cfg_path, data, log)
        wait_until(lambda: sync_status(data)["total"]["delivered"] > 5, 60, "deliveries")
        second = subprocess.run([str(BIN / "linestation"), "--data-dir", str(data), "sync", "--config",
                                 str(cfg_path)], capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and "already runs" in second.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    st = sync_status(data)
    assert st["total"]["in_flight"] == 0  # nothing left claimed by a process that is gone
    assert st["sinks"]["s3"]["pending"] > 0 and not st["sinks"]["s3"]["service_alive"]
    log_text = (tmp_path / "sync.log").read_text()
    assert "sync stopped" in log_text, log_text[-2000:]
