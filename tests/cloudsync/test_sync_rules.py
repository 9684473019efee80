"""Delivery rules without servers: backoff, bandwidth cap, circuit, claims and leases,
the disk quota policy on a real station, and the sync config section."""
from __future__ import annotations

import random
import shutil
import threading
import time

import pytest
from sync_helpers import record_inspections, sync_config

from cloudsync.disk_guard import ALARM_PREFIX, check_disk
from cloudsync.limits import DEGRADED, OFFLINE, ONLINE, Circuit, TokenBucket, backoff_delay
from cloudsync.outbox_queue import OutboxQueue
from cloudsync.service import ServiceLocked, open_service
from cloudsync.status import sync_status
from station.config import ConfigError, parse_config
from station.store.station_store import StationStore


def test_backoff_is_full_jitter_under_an_exponential_ceiling():
    rng = random.Random(1)
    for attempts, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (10, 60.0), (200, 60.0)):
        delays = [backoff_delay(attempts, 1.0, 60.0, rng) for _ in range(400)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling and min(delays) < 0.2 * ceiling  # spread over the whole range


def test_token_bucket_caps_bytes_per_second():
    bucket = TokenBucket(200_000)  # 200 kB/s, burst one second
    t0 = time.monotonic()
    for _ in range(6):
        bucket.take(100_000)  # 600 kB: 200 kB burst + 400 kB at the cap
    elapsed = time.monotonic() - t0
    assert 1.7 < elapsed < 3.5
    stop = threading.Event()
    stop.set()
    assert bucket.take(10_000_000, stop) is False  # a stopping service does not wait it out


def test_circuit_goes_offline_probes_and_recovers():
    now = [0.0]
    c = Circuit(offline_after=3, probe_interval_s=5.0, clock=lambda: now[0])
    c.failure("connect refused", retryable=True)
    assert c.state == DEGRADED and c.may_claim()
    c.failure("connect refused", retryable=True)
    c.failure("connect refused", retryable=True)
    assert c.state == OFFLINE and not c.may_claim() and not c.probe_due()
    now[0] = 5.1
    assert c.probe_due()
    c.probe_failed("still down")
    assert not c.probe_due() and c.last_error == "still down"
    now[0] = 10.2
    c.probe_succeeded()
    assert c.state == DEGRADED and c.may_claim()
    c.success()
    assert c.state == ONLINE
    c.failure("AccessDenied", retryable=False)  # about one row, not the link
    assert c.state == ONLINE and c.last_error == "AccessDenied"


def test_claims_follow_priority_and_requires_and_leases_expire(tmp_path):
    data = tmp_path / "data"
    record_inspections(data, 5)  # decisions: pass, reject, review, check_capture, pass
    q = OutboxQueue(data)
    try:
        sns = q.claim("sns", 10, lease_s=60)
        assert [i.kind for i in sns] == ["alert"] * 3
        s3 = q.claim("s3", 7, lease_s=60)
        assert [i.kind for i in s3] == ["result"] * 5 + ["image"] * 2  # results before images
        assert all(i.attempts == 1 for i in s3)
        img = s3[-1]
        assert img.payload["metadata"]["part_id"].startswith("P") and img.payload["metadata"]["lot"] == "LOT-7"
        assert q.claim("stepfunctions", 10, lease_s=60) == []  # their S3 rows are not done yet
        for i in s3:
            q.done(i.id, {"etag": "x"}, i.inspection_id)
        q.flush()
        ready = q.claim("stepfunctions", 10, lease_s=60)  # found through the delivery hints
        assert len(ready) == 2  # only the inspections whose image and result are both done
        assert len(q.claim("s3", 10, lease_s=0.001)) == 3  # the other images, on a 1 ms lease
        time.sleep(0.01)
        again = q.claim("s3", 10, lease_s=60)  # a lease of 1 ms ran out: claimable again
        assert len(again) == 3 and all(i.attempts == 2 for i in again)
        q.retry(again[0].id, "boom", 3600)
        q.dead(again[1].id, "AccessDenied: no")
        q.release(again[2].id)
        q.flush()
        st = sync_status(data)["sinks"]["s3"]
        assert (st["pending"], st["dead"], st["delivered"]) == (2, 1, 7)
        assert st["dead_letters"][0]["reason"] == "AccessDenied: no"
        assert q.retry_dead("s3") == 1
        assert sync_status(data)["sinks"]["s3"]["dead"] == 0
    finally:
        q.close()


def test_one_sync_service_per_data_dir_and_queue_only_default(tmp_path):
    data = tmp_path / "data"
    record_inspections(data, 2)
    cfg = sync_config()  # no sink enabled: the demo keeps queueing offline
    assert not cfg.sync.s3.enabled and cfg.sync.bandwidth_bytes_per_s is None
    first = open_service(cfg, data)
    try:
        assert first.engine.sinks == {}
        with pytest.raises(ServiceLocked):
            open_service(cfg, data)
    finally:
        first.stop()
    open_service(cfg, data).stop()  # released on stop
    with pytest.raises(FileNotFoundError):
        open_service(cfg, tmp_path / "nothing-here")


def test_sync_config_errors_name_the_key(tmp_path):
    base = "schema_version: 1\ncamera: {type: sim}\nsync:\n"
    with pytest.raises(ConfigError) as e:
        parse_config(base + "  s3: {enabled: true}\n  bandwidth_bytes_per_s: 10\n", "c.yaml")
    text = str(e.value)
    assert "sync.bandwidth_bytes_per_s" in text and "sync.s3" in text and "bucket is required" in text
    with pytest.raises(ConfigError) as e:
        parse_config(base + "  s3: {enabled: true, bucket: my-bucket, secret_access_key: abc}\n", "c.yaml")
    assert "secret_access_key_env" in str(e.value)  # secrets never from the file
    with pytest.raises(ConfigError) as e:
        parse_config(base + "  sns: {enabled: true, topic_arn: 'not-an-arn'}\n  stepfunctions: {enabled: true}\n",
                     "c.yaml")
    assert "sync.sns.topic_arn" in str(e.value) and "state_machine_arn is required" in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_config(base + "  s3: {enabled: true, bucket: b-ok, sse: rot13}\n", "c.yaml")
    assert "sync.s3.sse" in str(e.value)


def test_disk_nearly_full_holds_the_line_with_an_alarm_and_resumes(tmp_path, make_station):
    data = tmp_path / "data"
    free_mb = shutil.disk_usage(tmp_path).free / 2**20
    station = make_station(data, sync_config(min_free_disk_mb=free_mb + 4096))  # more than the disk has
    guard = station.disk_guard
    assert guard.alarm and guard.alarm.startswith(ALARM_PREFIX) and "Nothing is deleted" in guard.alarm
    assert station.cycle.suspend_reason == guard.alarm
    outcomes: list = []
    runner = threading.Thread(target=lambda: outcomes.extend(station.run(count=3)), daemon=True)
    runner.start()
    time.sleep(1.0)
    assert outcomes == [] and station.store.count() == 0  # no part accepted while the disk is short
    assert station.cycle.state.value == "suspended"
    guard.min_free_bytes = 0  # space is back (the guard re-checks on its own)
    runner.join(30)
    assert len(outcomes) == 3 and station.store.count() == 3 and guard.alarm is None
    st = check_disk(data, 10**18)
    assert not st.ok and st.unsynced_rows == StationStore(data, recover=False).outbox_counts()["pending"]
