"""Sync throughput, memory and the station's commit latency while sync drains.

Starts its own S3-compatible server (SeaweedFS ``weed mini``) and moto server on
127.0.0.1 in a temporary directory, creates records with the store API, and prints:

1. **1 MB images on loopback**: the sync service's drain rate into S3 against a plain
   sequential boto3 ``put_object`` loop of the same files, measured in the same run
   (median of rounds; the ratio is the figure to quote on a noisy machine; target >= 3x),
   and against plain N-thread ``put_object`` with N = the service's S3 workers: the most
   this server takes from a client on this machine (the *server ceiling*). The server's
   CPU (% of one core) is printed for each: when ``weed`` is CPU-bound on the shared
   cores, no client beats the ceiling, and ``sync / ceiling`` shows the service's overhead.
2. **1 MB images over an emulated WAN link** (``--rtt-ms``, default 20 ms): the same three
   measurements through ``bench/latency_link.py``, a TCP delay line in its own process that
   adds latency and no CPU to speak of; both the sequential loop and the service go
   through it. Reported beside, never instead of, the loopback figure.
3. **Small records end to end**: inspections/s until every row of S3 (image + result),
   Step Functions (execution) and SNS (alert when due) is delivered (target >= 50/s).
4. **Memory**: a ``linestation sync`` process drains a backlog of ``--backlog``
   inspections to the end (S3, SNS, Step Functions rows; no cap); its RSS is sampled
   every 0.5 s: start, median of the first and of the last 10 % of the drain, max, and
   the least-squares slope in MB per 10,000 inspections delivered (target: flat).
5. **Station impact**: the station's commit latency (p50 / p99) on the simulated camera
   without sync, then while the sync process drains the same database.

    python bench/sync.py [--rounds 3] [--images 40] [--workers 8] [--rtt-ms 20] [--wan-workers 16]
                         [--small 400] [--backlog 10000] [--station 150] [--json]

``--backlog 100000`` is the full figure; ``--rounds 0``, ``--rtt-ms 0``, ``--backlog 0``,
``--station 0`` skip a part. The SNS topic has no SQS subscriber (see :func:`moto_rig`). With --json the last line is one JSON object
with the figures (keys printed above them).

Server: ``weed mini`` exactly as the tests start it (``tests/servers.py``: one process with
master, volume, filer and S3 gateway, ``-master.volumeSizeLimitMB=64``); no flag is tuned
for the bench.
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

from servers import BIN, HOST, S3Server, ServerProcess, free_ports, start_moto  # noqa: E402

from cloudsync.service import open_service  # noqa: E402
from cloudsync.status import sync_status  # noqa: E402
from station.config import parse_config  # noqa: E402
from station.store.db import DB_FILENAME, make_engine  # noqa: E402
from station.store.jsonutil import iso_utc  # noqa: E402
from station.store.outbox import outbox_rows_for  # noqa: E402
from station.store.record import InspectionRecord  # noqa: E402
from station.store.schema import Inspection, OutboxRow  # noqa: E402
from station.store.station_store import StationStore  # noqa: E402
from station.aws_client import AwsEndpoint, client as aws_client  # noqa: E402

TARGETS = {"image_ratio_vs_sequential": 3.0, "small_inspections_per_s": 50.0}
SYNCED = ("s3", "sns", "stepfunctions")  # the sinks the bench configures (MES rows stay queued)
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


def config(s3: S3Server, bucket: str, moto=None, rig=None, *, s3_url: str | None = None, workers: int = 8,
           **sync):
    aws = {"access_key_id_env": "LS_TEST_S3_KEY", "secret_access_key_env": "LS_TEST_S3_SECRET"}
    data = {"schema_version": 1, "station": {"plant": "p1", "line": "l1", "station": "s1"},
            "camera": {"type": "sim", "width": 1280, "height": 1024, "seed": 1, "defect_rate": 0.2},
            "detector": {"type": "variation", "train_images": 40}, "recipe": {"name": "bench"},
            "sync": {"poll_interval_s": 0.5, "backoff_base_s": 0.1, "backoff_max_s": 2.0,
                     "s3": {"enabled": True, "endpoint_url": s3_url or s3.endpoint_url, "bucket": bucket,
                            "workers": workers, **aws}, **sync}}
    if rig is not None:
        m = {"enabled": True, "endpoint_url": moto.endpoint_url, "access_key_id_env": "LS_TEST_MOTO_KEY",
             "secret_access_key_env": "LS_TEST_MOTO_SECRET", "workers": 4}
        data["sync"]["sns"] = {**m, "topic_arn": rig["topic"]}
        data["sync"]["stepfunctions"] = {**m, "state_machine_arn": rig["sm"]}
    return parse_config(yaml.safe_dump(data), "bench-sync.yaml")


def waiting_rows(conn, sinks: tuple[str, ...]) -> int:
    """Rows of ``sinks`` not delivered yet (an index range count: cheap on a big outbox)."""
    marks = ",".join(f"'{s}'" for s in sinks)
    return int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM outbox WHERE sink IN ({marks}) "
                                    "AND status IN ('pending', 'in_flight')").scalar())


def drain_in_process(cfg, data: Path, sinks: tuple[str, ...], timeout_s: float = 600) -> float:
    reader = make_engine(data / DB_FILENAME, writer=False)
    svc = open_service(cfg, data)
    t0 = time.perf_counter()
    svc.start()
    try:
        while True:
            with reader.connect() as conn:
                if waiting_rows(conn, sinks) == 0:
                    return time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout_s:
                raise TimeoutError(f"not drained after {timeout_s} s: {sync_status(engine=reader)['sinks']}")
            time.sleep(0.02)
    finally:
        svc.stop(30)
        reader.dispose()


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(pid: int, fn) -> tuple[float, float]:
    """(seconds, the server's CPU % of one core meanwhile) of ``fn()``."""
    c0, t0 = cpu_s(pid), time.perf_counter()
    fn()
    secs = time.perf_counter() - t0
    return secs, 100.0 * (cpu_s(pid) - c0) / secs


def s3_client_at(s3: S3Server, url: str):
    s3.client()  # exports the credentials' environment variables
    return aws_client("s3", AwsEndpoint(endpoint_url=url, access_key_env="LS_TEST_S3_KEY",
                                        secret_key_env="LS_TEST_S3_SECRET"))


def image_round(tmp: Path, s3: S3Server, n: int, rnd: int, *, url: str, workers: int, tag: str) -> dict:
    """One round: the same files by a plain sequential boto3 loop, by ``workers`` plain
    threads (what the server can take at most) and by the sync service, all via ``url``."""
    tag = f"{tag}{rnd}"
    data = tmp / f"img-{tag}"
    make_records(data, n, 1024, seed=100 + rnd)  # 1024x1024 noise: ~1.0 MB PNG each
    with StationStore(data, recover=False) as store, store.reader.connect() as conn:
        files = [data / json.loads(p)["local_path"] for (p,) in conn.exec_driver_sql(
            "SELECT payload FROM outbox WHERE kind = 'image'")]
    size = sum(f.stat().st_size for f in files)
    c = s3_client_at(s3, url)
    bucket_seq, bucket_par, bucket_sync = f"seq-{tag}", f"par-{tag}", f"sync-{tag}"
    for b in (bucket_seq, bucket_par, bucket_sync):
        c.create_bucket(Bucket=b)
    weed = s3.server.proc.pid

    def sequential() -> None:  # the baseline: a plain boto3 put_object loop, defaults and all
        for i, f in enumerate(files):
            c.put_object(Bucket=bucket_seq, Key=f"raw/{i}.png", Body=f.read_bytes(), ContentType="image/png")

    clients = [s3_client_at(s3, url) for _ in range(workers)]

    def parallel() -> None:
        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(lambda i: clients[i % workers].put_object(
                Bucket=bucket_par, Key=f"raw/{i}.png", Body=files[i].read_bytes(), ContentType="image/png"),
                range(len(files))))

    seq_s, seq_cpu = timed(weed, sequential)
    par_s, par_cpu = timed(weed, parallel)
    cfg = config(s3, bucket_sync, s3_url=url, workers=workers)
    box: dict[str, float] = {}
    sync_s_, sync_cpu = timed(weed, lambda: box.setdefault("s", drain_in_process(cfg, data, ("s3",))))
    return {"bytes": size, "images": len(files), "sequential_s": seq_s, "parallel_s": par_s,
            "sync_s": box["s"], "server_cpu_pct": {"sequential": seq_cpu, "parallel": par_cpu, "sync": sync_cpu}}


def image_figures(rounds: list[dict], prefix: str) -> dict:
    mbs = {k: [x["bytes"] / MB / x[f"{k}_s"] for x in rounds] for k in ("sequential", "parallel", "sync")}
    fig: dict = {}
    for k, v in mbs.items():
        fig[f"{prefix}_{k}_mb_per_s"] = round(statistics.median(v), 2)
    fig[f"{prefix}_ratio_vs_sequential"] = round(
        statistics.median(s / q for s, q in zip(mbs["sync"], mbs["sequential"])), 2)
    fig[f"{prefix}_ceiling_vs_sequential"] = round(
        statistics.median(p / q for p, q in zip(mbs["parallel"], mbs["sequential"])), 2)
    fig[f"{prefix}_ratio_vs_parallel_ceiling"] = round(
        statistics.median(s / q for s, q in zip(mbs["sync"], mbs["parallel"])), 2)
    fig[f"{prefix}_server_cpu_pct"] = {k: round(statistics.median(x["server_cpu_pct"][k] for x in rounds))
                                       for k in ("sequential", "parallel", "sync")}
    return fig


def start_link(tmp: Path, upstream: int, rtt_ms: float) -> ServerProcess:
    port = free_ports(1)[0]
    argv = [sys.executable, str(ROOT / "bench" / "latency_link.py"), "--port", str(port),
            "--upstream", str(upstream), "--rtt-ms", str(rtt_ms)]
    return ServerProcess(argv, port, tmp / "latency_link.log").start(20)


def moto_rig(moto) -> dict:
    """A topic and a state machine. The topic has no SQS subscriber: moto's SNS -> SQS fan-out
    costs time proportional to the messages already in the queue (measured here: 72 -> 9
    messages/s after 1,600), which says nothing about the service or about SNS itself
    (the fan-out is asynchronous there). The tests check routing to real queues."""
    sns, sfn = moto.client("sns"), moto.client("stepfunctions")
    topic = sns.create_topic(Name="bench-alerts")["TopicArn"]
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


def slope_per(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 when xs do not vary)."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0


def memory_run(tmp: Path, s3: S3Server, moto, rig, backlog: int, timeout_s: float) -> dict:
    """A ``linestation sync`` process drains the whole backlog; RSS against rows delivered."""
    data = tmp / "backlog"
    t0 = time.perf_counter()
    bulk_backlog(data, backlog)
    log(f"backlog of {backlog} inspections created in {time.perf_counter() - t0:.1f} s")
    s3.client().create_bucket(Bucket="backlog")
    reader = make_engine(data / DB_FILENAME, writer=False)
    with reader.connect() as conn:
        total = waiting_rows(conn, SYNCED)
    proc = sync_process(config(s3, "backlog", moto, rig), data, tmp)
    samples: list[tuple[float, int, int]] = []  # (seconds, rows delivered, RSS kB)
    left = total
    try:
        t_start = time.perf_counter()
        while left == total and proc.poll() is None:  # start-up (imports, clients) is not the drain
            time.sleep(0.1)
            with reader.connect() as conn:
                left = waiting_rows(conn, SYNCED)
        log(f"  first rows delivered after {time.perf_counter() - t_start:.1f} s (start-up)")
        while left and proc.poll() is None:
            elapsed = time.perf_counter() - t_start
            if elapsed > timeout_s:  # reported as not drained (the figures so far still print)
                log(f"backlog not drained after {timeout_s:.0f} s ({left} rows left)")
                break
            with reader.connect() as conn:
                left = waiting_rows(conn, SYNCED)
            samples.append((elapsed, total - left, rss_kb(proc.pid)))
            if len(samples) % 120 == 0:
                log(f"  {elapsed:.0f} s: {total - left}/{total} rows, RSS {samples[-1][2] / 1024:.1f} MB")
            time.sleep(0.5)
        elapsed = time.perf_counter() - t_start
        if proc.poll() is not None:
            raise RuntimeError(f"the sync process exited with {proc.returncode}: see {tmp}/sync-backlog.log")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        reader.dispose()
    mb = [r / 1024 for _t, _d, r in samples]
    tenth = max(1, len(samples) // 10)
    per_insp = total / backlog  # deliverable rows per inspection
    slope = slope_per([d / per_insp for _t, d, _r in samples], mb) * 10_000
    done = total - left
    return {"backlog_inspections": backlog, "rows": total, "drained": left == 0, "rows_left": left,
            "drain_s": round(elapsed, 1),  # incl. start-up
            "rows_per_s": round(done / elapsed, 1), "inspections_per_s": round(done / per_insp / elapsed, 1),
            "rss_samples": len(samples), "rss_start_mb": round(mb[0], 1),
            "rss_first_10pct_median_mb": round(statistics.median(mb[:tenth]), 1),
            "rss_last_10pct_median_mb": round(statistics.median(mb[-tenth:]), 1),
            "rss_max_mb": round(max(mb), 1), "rss_slope_mb_per_10k_inspections": round(slope, 3)}


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
    ap.add_argument("--workers", type=int, default=8, help="the service's S3 workers = the plain ceiling's threads")
    ap.add_argument("--rtt-ms", type=float, default=20.0, help="round trip of the emulated WAN link (0: skip)")
    ap.add_argument("--wan-workers", type=int, default=16,
                    help="S3 workers (and plain threads) over the WAN link: more requests in flight hide its latency")
    ap.add_argument("--small", type=int, default=400, help="small inspections for the end-to-end rate")
    ap.add_argument("--backlog", type=int, default=10_000, help="inspections in the memory backlog (0: skip)")
    ap.add_argument("--backlog-timeout", type=float, default=7200.0,
                    help="stop sampling after this long; the figures then say how many rows were left")
    ap.add_argument("--station", type=int, default=150, help="inspections per station-impact phase (0: skip)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    fig: dict = {"workers": args.workers}
    with tempfile.TemporaryDirectory(prefix="ls-bench-sync-", dir=os.environ.get("BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        s3 = S3Server(tmp / "s3", bucket="bench").start()
        moto = start_moto(tmp / "moto")
        link = None
        os.environ.setdefault("LS_TEST_MOTO_KEY", "testing")
        os.environ.setdefault("LS_TEST_MOTO_SECRET", "testing")
        try:
            links = [("image", s3.endpoint_url, args.workers)]
            if args.rtt_ms:
                link = start_link(tmp, s3.s3_port, args.rtt_ms)
                links.append(("wan_image", f"http://{HOST}:{link.port}", args.wan_workers))
                fig["wan_rtt_ms"], fig["wan_workers"] = args.rtt_ms, args.wan_workers
            for prefix, url, workers in links if args.rounds else []:
                rounds = []
                for r in range(args.rounds):
                    rounds.append(image_round(tmp, s3, args.images, r, url=url, workers=workers, tag=prefix[0]))
                    x = rounds[-1]
                    log(f"{prefix} round {r}: {x['images']} images {x['bytes'] / MB:.1f} MB: sequential "
                        f"{x['sequential_s']:.2f} s, {workers} threads {x['parallel_s']:.2f} s, "
                        f"sync {x['sync_s']:.2f} s; server CPU % {x['server_cpu_pct']}")
                fig.update(image_figures(rounds, prefix))
                fig["image_mb"] = round(statistics.median(x["bytes"] / x["images"] for x in rounds) / MB, 3)

            rig = moto_rig(moto)
            if args.small:
                data = tmp / "small"
                t0 = time.perf_counter()
                make_records(data, args.small, 64, seed=7)
                log(f"{args.small} small inspections recorded in {time.perf_counter() - t0:.1f} s")
                s3.client().create_bucket(Bucket="small")
                secs = drain_in_process(config(s3, "small", moto, rig), data, SYNCED)
                st = sync_status(data)["sinks"]
                fig["small_inspections"] = args.small
                fig["small_rows_delivered"] = sum(st[s]["delivered"] for s in SYNCED)
                fig["small_inspections_per_s"] = round(args.small / secs, 1)

            if args.backlog:
                fig["memory"] = memory_run(tmp, s3, moto, rig, args.backlog, args.backlog_timeout)
            if args.station:
                fig["station"] = station_impact(tmp, s3, moto, rig, args.station)
        finally:
            if link is not None:
                link.kill()
            moto.stop()
            s3.stop()
    fig["targets"] = TARGETS
    fig["targets_met"] = {k: fig[k] >= v for k, v in TARGETS.items() if k in fig}
    if "wan_image_ratio_vs_sequential" in fig:
        fig["targets_met"]["wan_image_ratio_vs_sequential"] = fig["wan_image_ratio_vs_sequential"] >= 3.0
    for prefix, what, workers in (("image", "loopback", args.workers),
                                  ("wan_image", f"emulated WAN, RTT {args.rtt_ms:g} ms", args.wan_workers)):
        if f"{prefix}_sync_mb_per_s" not in fig:
            continue
        cpu = fig[f"{prefix}_server_cpu_pct"]
        print(f"1 MB images, {what}: sequential put_object {fig[f'{prefix}_sequential_mb_per_s']} MB/s, sync "
              f"{fig[f'{prefix}_sync_mb_per_s']} MB/s, ratio {fig[f'{prefix}_ratio_vs_sequential']}x "
              f"(median of {args.rounds})")
        print(f"   plain {workers}-thread put_object (the server's ceiling) {fig[f'{prefix}_parallel_mb_per_s']} "
              f"MB/s = {fig[f'{prefix}_ceiling_vs_sequential']}x sequential; sync / ceiling "
              f"{fig[f'{prefix}_ratio_vs_parallel_ceiling']}x; server CPU (% of a core) sequential "
              f"{cpu['sequential']}, ceiling {cpu['parallel']}, sync {cpu['sync']}")
    if "small_inspections_per_s" in fig:
        print(f"small records end to end: {fig['small_inspections_per_s']} inspections/s "
              f"({fig['small_rows_delivered']} rows to S3, SNS, Step Functions)")
    if "memory" in fig:
        m = fig["memory"]
        end = "to the end" if m["drained"] else f"NOT to the end ({m['rows_left']} rows left at the timeout)"
        print(f"memory draining a {m['backlog_inspections']}-inspection backlog ({m['rows']} rows) {end} in "
              f"{m['drain_s']} s ({m['rows_per_s']} rows/s): RSS start {m['rss_start_mb']} MB, median first 10 % "
              f"{m['rss_first_10pct_median_mb']} MB, last 10 % {m['rss_last_10pct_median_mb']} MB, max "
              f"{m['rss_max_mb']} MB, slope {m['rss_slope_mb_per_10k_inspections']} MB per 10k inspections")
    if "station" in fig:
        s = fig["station"]
        print(f"station commit while sync drains: p50 {s['commit_p50_ms_alone']} -> {s['commit_p50_ms_with_sync']} ms, "
              f"p99 {s['commit_p99_ms_alone']} -> {s['commit_p99_ms_with_sync']} ms (x{s['commit_p99_ratio']})")
    print("targets: " + ", ".join(f"{k} >= {TARGETS.get(k, 3.0)} {'OK' if ok else 'MISSED'}"
                                  for k, ok in fig["targets_met"].items()))
    if args.json:
        print(json.dumps(fig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
