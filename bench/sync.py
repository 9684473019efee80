"""Sync throughput, memory and the station's commit latency while sync drains.

Starts its own S3-compatible server (SeaweedFS ``weed mini``) and moto server on
127.0.0.1 in a temporary directory, creates records with the store API, and prints:

1. **1 MB images**: the sync service's drain rate into S3 against a plain sequential
   ``put_object`` loop of the same files, measured in the same run (median of rounds;
   the ratio is the figure to quote on a noisy machine; target >= 3x), and against plain
   8-thread ``put_object`` (the most the local server takes on this machine: when it is
   CPU-bound, no client can beat that ceiling, and ``sync / ceiling`` shows the overhead).
2. **Small records end to end**: inspections/s until every row of S3 (image + result),
   Step Functions (execution) and SNS (alert when due) is delivered (target >= 50/s).
3. **Memory**: RSS of a ``linestation sync`` process sampled while it drains a backlog of
   ``--backlog`` (100,000) inspections for ``--memory-seconds``: start / peak / end
   (target: flat), and what it delivered meanwhile.
4. **Station impact**: the station's commit latency (p50 / p99) on the simulated camera
   without sync, then while the sync process drains the same database.

    python bench/sync.py [--rounds 3] [--images 40] [--small 400] [--backlog 100000]
                         [--memory-seconds 60] [--station 150] [--json]

With --json the last line is one JSON object with the figures (keys printed above them).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from servers import BIN, S3Server, start_moto  # noqa: E402

from cloudsync.service import open_service  # noqa: E402
from cloudsync.status import sync_status  # noqa: E402
from station.config import parse_config  # noqa: E402
from station.store.db import DB_FILENAME, make_engine  # noqa: E402
from station.store.jsonutil import iso_utc  # noqa: E402
from station.store.outbox import outbox_rows_for  # noqa: E402
from station.store.record import InspectionRecord  # noqa: E402
from station.store.schema import Inspection, OutboxRow  # noqa: E402
from station.store.station_store import StationStore  # noqa: E402

TARGETS = {"image_ratio_vs_sequential": 3.0, "small_inspections_per_s": 50.0}
DECISIONS = ("pass", "reject", "review", "pass", "check_capture")
MB = 1 << 20


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(v: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(v, dtype=np.float64), q)) if v else float("nan")


def record(i: int, station: str = "s1") -> InspectionRecord:
    d = DECISIONS[i % len(DECISIONS)]
    return InspectionRecord(station=station, decision=d, started_at=time.time(), finished_at=time.time(),
                            recipe="bench", part_id=f"B{i:07d}", lot="LOT-B", calibration_version="cal-1",
                            model_id="variation", model_version="1", confidence=0.8 if d != "pass" else 0.95,
                            score=0.3, is_anomalous=d == "reject")


def make_records(data: Path, n: int, side: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with StationStore(data, plant="p1", line="l1", station="s1") as store:
        for i in range(n):
            store.record_inspection(record(seed * 1_000_000 + i), rng.integers(0, 256, (side, side), dtype=np.uint8))


def bulk_backlog(data: Path, n: int) -> None:
    """``n`` inspections with their outbox rows, inserted in big transactions (one image file
    shared by all: the backlog is about rows, and the store de-duplicates by content)."""
    rng = np.random.default_rng(5)
    with StationStore(data, plant="p1", line="l1", station="s1") as store:
        stored = store.images.put(rng.integers(0, 256, (64, 64), dtype=np.uint8))
        now = datetime.now(timezone.utc)
        for start in range(0, n, 5000):
            insp, rows = [], []
            for i in range(start, min(n, start + 5000)):
                rec = record(i)
                doc = rec.to_document(stored, recorded_at=now)
                insp.append({"id": rec.id, "station": rec.station, "recipe": rec.recipe, "part_id": rec.part_id,
                             "lot": rec.lot, "started_at": rec.started_at, "finished_at": rec.finished_at,
                             "recorded_at": now, "config_hash": "", "calibration_version": rec.calibration_version,
                             "model_id": rec.model_id, "model_version": rec.model_version, "decision": rec.decision,
                             "verdict": rec.verdict, "reason": "", "schema_version": 1, "record": doc,
                             "image_path": stored.relpath, "image_sha256": stored.sha256})
                rows += outbox_rows_for(rec, stored, plant="p1", line="l1", station="s1", document=doc,
                                        now=iso_utc(now - timedelta(seconds=1)))
            with store.engine.begin() as conn:
                conn.execute(Inspection.__table__.insert(), insp)
                conn.execute(OutboxRow.__table__.insert(), rows)


def config(s3: S3Server, bucket: str, moto=None, rig=None, **sync):
    aws = {"access_key_id_env": "LS_TEST_S3_KEY", "secret_access_key_env": "LS_TEST_S3_SECRET"}
    data = {"schema_version": 1, "station": {"plant": "p1", "line": "l1", "station": "s1"},
            "camera": {"type": "sim", "width": 1280, "height": 1024, "seed": 1, "defect_rate": 0.2},
            "detector": {"type": "variation", "train_images": 40}, "recipe": {"name": "bench"},
            "sync": {"poll_interval_s": 0.5, "backoff_base_s": 0.1, "backoff_max_s": 2.0,
                     "s3": {"enabled": True, "endpoint_url": s3.endpoint_url, "bucket": bucket,
                            "workers": 8, **aws}, **sync}}
    if rig is not None:
        m = {"enabled": True, "endpoint_url": moto.endpoint_url, "access_key_id_env": "LS_TEST_MOTO_KEY",
             "secret_access_key_env": "LS_TEST_MOTO_SECRET", "workers": 4}
        data["sync"]["sns"] = {**m, "topic_arn": rig["topic"]}
        data["sync"]["stepfunctions"] = {**m, "state_machine_arn": rig["sm"]}
    return parse_config(yaml.safe_dump(data), "bench-sync.yaml")


def drain_in_process(cfg, data: Path, sinks: tuple[str, ...], timeout_s: float = 600) -> float:
    reader = make_engine(data / DB_FILENAME, writer=False)
    svc = open_service(cfg, data)
    t0 = time.perf_counter()
    svc.start()
    try:
        while True:
            st = sync_status(engine=reader)["sinks"]
            if all(st.get(s, {}).get("pending", 0) + st.get(s, {}).get("in_flight", 0) == 0 for s in sinks):
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout_s:
                raise TimeoutError(f"not drained after {timeout_s} s: {st}")
            time.sleep(0.02)
    finally:
        svc.stop(30)
        reader.dispose()


def image_round(tmp: Path, s3: S3Server, n: int, rnd: int) -> dict:
    """One round: the same files by a plain sequential loop, by 8 plain threads (what the
    server can take at most) and by the sync service."""
    tag = f"r{rnd}"
    data = tmp / f"img-{tag}"
    make_records(data, n, 1024, seed=100 + rnd)  # 1024x1024 noise: ~1.0 MB PNG each
    with StationStore(data, recover=False) as store, store.reader.connect() as conn:
        files = [data / json.loads(p)["local_path"] for (p,) in conn.exec_driver_sql(
            "SELECT payload FROM outbox WHERE kind = 'image'")]
    size = sum(f.stat().st_size for f in files)
    c = s3.client()
    bucket_seq, bucket_par, bucket_sync = f"seq-{tag}", f"par-{tag}", f"sync-{tag}"
    for b in (bucket_seq, bucket_par, bucket_sync):
        c.create_bucket(Bucket=b)
    t0 = time.perf_counter()
    for i, f in enumerate(files):  # the baseline: a plain sequential put_object loop
        c.put_object(Bucket=bucket_seq, Key=f"raw/{i}.png", Body=f.read_bytes(), ContentType="image/png")
    seq_s = time.perf_counter() - t0
    clients = [s3.client() for _ in range(8)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda i: clients[i % 8].put_object(Bucket=bucket_par, Key=f"raw/{i}.png",
                                                        Body=files[i].read_bytes(), ContentType="image/png"),
                    range(len(files))))
    par_s = time.perf_counter() - t0
    sync_s = drain_in_process(config(s3, bucket_sync), data, ("s3",))
    return {"bytes": size, "images": len(files), "sequential_s": seq_s, "parallel_s": par_s, "sync_s": sync_s}


def moto_rig(moto) -> dict:
    sns, sqs, sfn = moto.client("sns"), moto.client("sqs"), moto.client("stepfunctions")
    topic = sns.create_topic(Name="bench-alerts")["TopicArn"]
    url = sqs.create_queue(QueueName="bench-all")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    sm = sfn.create_state_machine(name="bench", roleArn="arn:aws:iam::123456789012:role/x", definition=json.dumps(
        {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}))["stateMachineArn"]
    return {"topic": topic, "sm": sm}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def sync_process(cfg, data: Path, tmp: Path) -> subprocess.Popen:
    path = tmp / f"sync-{data.name}.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True)))
    return subprocess.Popen([str(BIN / "linestation"), "--data-dir", str(data), "sync", "--config", str(path)],
                            stdout=subprocess.DEVNULL, stderr=open(tmp / f"sync-{data.name}.log", "wb"))


def memory_run(tmp: Path, s3: S3Server, moto, rig, backlog: int, seconds: float) -> dict:
    data = tmp / "backlog"
    t0 = time.perf_counter()
    bulk_backlog(data, backlog)
    log(f"backlog of {backlog} inspections created in {time.perf_counter() - t0:.1f} s")
    s3.client().create_bucket(Bucket="backlog")
    proc = sync_process(config(s3, "backlog", moto, rig), data, tmp)
    samples: list[int] = []
    try:
        time.sleep(1.5)  # interpreter and SDK start-up are not the drain
        delivered0 = sync_status(data)["total"]["delivered"]
        t_start = time.perf_counter()
        while time.perf_counter() - t_start < seconds and proc.poll() is None:
            samples.append(rss_kb(proc.pid))
            time.sleep(0.5)
        delivered = sync_status(data)["total"]["delivered"] - delivered0
        elapsed = time.perf_counter() - t_start
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    third = max(1, len(samples) // 3)
    return {"backlog_inspections": backlog, "sample_s": round(elapsed, 1), "rows_delivered": delivered,
            "rows_per_s": round(delivered / elapsed, 1),
            "rss_start_mb": round(samples[0] / 1024, 1), "rss_peak_mb": round(max(samples) / 1024, 1),
            "rss_end_mb": round(samples[-1] / 1024, 1),
            "rss_first_third_median_mb": round(statistics.median(samples[:third]) / 1024, 1),
            "rss_last_third_median_mb": round(statistics.median(samples[-third:]) / 1024, 1)}


def station_impact(tmp: Path, s3: S3Server, moto, rig, count: int) -> dict:
    from station.runtime import StationRuntime

    data = tmp / "station"
    cfg = config(s3, "station", moto, rig, bandwidth_bytes_per_s=None)
    s3.client().create_bucket(Bucket="station")
    rt = StationRuntime.open(cfg, data, progress=log)
    try:
        list(rt.run(count=10))

        def commits(n: int) -> list[float]:
            out = []
            for _ in rt.run(count=n):
                out.append(rt.store.last_timings.get("commit_ms", float("nan")))
            return out

        alone = commits(count)
        proc = sync_process(cfg, data, tmp)  # drains what was just recorded, and what comes
        try:
            time.sleep(1.5)
            busy = commits(count)
            delivered = sync_status(data)["total"]["delivered"]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    finally:
        rt.close()
    return {"inspections": count, "commit_p50_ms_alone": round(pct(alone, 50), 3),
            "commit_p99_ms_alone": round(pct(alone, 99), 3), "commit_p50_ms_with_sync": round(pct(busy, 50), 3),
            "commit_p99_ms_with_sync": round(pct(busy, 99), 3),
            "commit_p99_ratio": round(pct(busy, 99) / pct(alone, 99), 2), "rows_synced_meanwhile": delivered}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="image rounds (median taken)")
    ap.add_argument("--images", type=int, default=40, help="1 MB images per round")
    ap.add_argument("--small", type=int, default=400, help="small inspections for the end-to-end rate")
    ap.add_argument("--backlog", type=int, default=100_000, help="inspections in the memory backlog")
    ap.add_argument("--memory-seconds", type=float, default=60.0)
    ap.add_argument("--station", type=int, default=150, help="inspections per station-impact phase (0: skip)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    fig: dict = {}
    with tempfile.TemporaryDirectory(prefix="ls-bench-sync-", dir=os.environ.get("BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        s3 = S3Server(tmp / "s3", bucket="bench").start()
        moto = start_moto(tmp / "moto")
        os.environ.setdefault("LS_TEST_MOTO_KEY", "testing")
        os.environ.setdefault("LS_TEST_MOTO_SECRET", "testing")
        try:
            rounds = []
            for r in range(args.rounds):
                rounds.append(image_round(tmp, s3, args.images, r))
                x = rounds[-1]
                log(f"round {r}: {x['images']} images {x['bytes'] / MB:.1f} MB: sequential {x['sequential_s']:.2f} s, "
                    f"8 threads {x['parallel_s']:.2f} s, sync {x['sync_s']:.2f} s")
            mbs = {k: [x["bytes"] / MB / x[f"{k}_s"] for x in rounds] for k in ("sequential", "parallel", "sync")}
            fig["image_mb"] = round(statistics.median(x["bytes"] / x["images"] for x in rounds) / MB, 3)
            for k, v in mbs.items():
                fig[f"image_{k}_mb_per_s"] = round(statistics.median(v), 2)
            fig["image_ratio_vs_sequential"] = round(
                statistics.median(s / q for s, q in zip(mbs["sync"], mbs["sequential"])), 2)
            fig["image_ratio_vs_parallel_ceiling"] = round(
                statistics.median(s / q for s, q in zip(mbs["sync"], mbs["parallel"])), 2)

            rig = moto_rig(moto)
            data = tmp / "small"
            t0 = time.perf_counter()
            make_records(data, args.small, 64, seed=7)
            log(f"{args.small} small inspections recorded in {time.perf_counter() - t0:.1f} s")
            s3.client().create_bucket(Bucket="small")
            secs = drain_in_process(config(s3, "small", moto, rig), data, ("s3", "sns", "stepfunctions"))
            st = sync_status(data)["sinks"]
            fig["small_inspections"] = args.small
            fig["small_rows_delivered"] = sum(st[s]["delivered"] for s in ("s3", "sns", "stepfunctions"))
            fig["small_inspections_per_s"] = round(args.small / secs, 1)

            if args.backlog:
                fig["memory"] = memory_run(tmp, s3, moto, rig, args.backlog, args.memory_seconds)
            if args.station:
                fig["station"] = station_impact(tmp, s3, moto, rig, args.station)
        finally:
            moto.stop()
            s3.stop()
    fig["targets"] = TARGETS
    fig["targets_met"] = {k: fig[k] >= v for k, v in TARGETS.items()}
    print(f"1 MB images: sequential put_object {fig['image_sequential_mb_per_s']} MB/s, sync "
          f"{fig['image_sync_mb_per_s']} MB/s, ratio {fig['image_ratio_vs_sequential']}x (median of {args.rounds})")
    print(f"   plain 8-thread put_object (the server's ceiling here) {fig['image_parallel_mb_per_s']} MB/s; "
          f"sync / ceiling {fig['image_ratio_vs_parallel_ceiling']}x")
    print(f"small records end to end: {fig['small_inspections_per_s']} inspections/s "
          f"({fig['small_rows_delivered']} rows to S3, SNS, Step Functions)")
    if "memory" in fig:
        m = fig["memory"]
        print(f"memory draining a {m['backlog_inspections']}-inspection backlog for {m['sample_s']} s: RSS start "
              f"{m['rss_start_mb']} MB, peak {m['rss_peak_mb']} MB, end {m['rss_end_mb']} MB "
              f"({m['rows_delivered']} rows delivered, {m['rows_per_s']}/s)")
    if "station" in fig:
        s = fig["station"]
        print(f"station commit while sync drains: p50 {s['commit_p50_ms_alone']} -> {s['commit_p50_ms_with_sync']} ms, "
              f"p99 {s['commit_p99_ms_alone']} -> {s['commit_p99_ms_with_sync']} ms (x{s['commit_p99_ratio']})")
    print("targets: " + ", ".join(f"{k} >= {v} {'OK' if fig['targets_met'][k] else 'MISSED'}" for k, v in TARGETS.items()))
    if args.json:
        print(json.dumps(fig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
