"""THE crash test: SIGKILL a writer at random points; every commit is whole, nothing half.

A child process streams inspections (1280x1024-ish random images, some capture faults
without image) into a store; the parent kills it with SIGKILL at random moments and starts
it again on the same data directory. Afterwards every committed inspection must be
complete (image file with its hash, spec rows, audit entry, outbox rows), the inspections
the child saw committed must all be there, and recovery must remove exactly the files no
row references.

SIGKILL tests process crashes (the page cache survives); power loss is what
``synchronous=FULL`` and the fsyncs are for, and is not simulated here.
"""
from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func
from sqlalchemy import select as sql_select

from station.store.images import sha256_file
from station.store.record import ALERT_DECISIONS
from station.store.schema import AuditEntry, Inspection, OutboxRow, SpecResult
from station.store.station_store import StationStore

CHILD = Path(__file__).with_name("crash_writer.py")


def _run_and_kill(data_dir: Path, seed: int, delay_s: float) -> tuple[set[str], set[str]]:
    with subprocess.Popen(
        [sys.executable, str(CHILD), str(data_dir), str(seed)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=CHILD.parent,
    ) as proc:
        try:
            deadline = time.monotonic() + 60
            while True:
                ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
                line = proc.stdout.readline() if ready else ""
                if line.strip() == "ready":
                    break
                if not line:
                    why = proc.stderr.read() if proc.poll() is not None else "timeout"
                    raise AssertionError(f"child never became ready: {why}")
            time.sleep(delay_s)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            # Read through the same buffered file object readline() used: communicate()
            # reads the raw pipe and would lose lines readline() had already buffered.
            out, err = proc.stdout.read(), proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == -signal.SIGKILL, f"child ended on its own ({proc.returncode}): {err}"
    begun = {ln.split()[1] for ln in out.splitlines() if ln.startswith("begin ")}
    committed = {ln.split()[1] for ln in out.splitlines() if ln.startswith("committed ")}
    return begun, committed


def test_sigkill_at_random_points_never_leaves_half_a_record(tmp_path):
    rnd = random.Random(int.from_bytes(os.urandom(4), "little"))
    data_dir = tmp_path / "data"
    begun, committed = set(), set()
    kills = 0
    while kills < 8 or (kills < 16 and not _leftovers(data_dir)):
        b, c = _run_and_kill(data_dir, seed=kills, delay_s=rnd.uniform(0.05, 0.4))
        begun |= b
        committed |= c
        kills += 1
    assert len(committed) >= 8, "the child hardly wrote anything: is the machine very slow?"

    store = StationStore(data_dir, recover=False)
    try:
        with store.reader.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
            rows = conn.execute(sql_select(Inspection)).all()
            spec_counts = dict(conn.execute(
                sql_select(SpecResult.inspection_id, func.count()).group_by(SpecResult.inspection_id)).all())
            audit_subjects = {s for (s,) in conn.execute(
                sql_select(AuditEntry.subject).where(AuditEntry.action == "inspection.recorded"))}
            outbox = {}
            for iid, key in conn.execute(sql_select(OutboxRow.inspection_id, OutboxRow.idempotency_key)):
                outbox.setdefault(iid, set()).add(key)
        ids = {r.id for r in rows}

        # Everything the child saw committed survived the kills; nothing else appeared.
        assert committed <= ids, f"committed but lost: {sorted(committed - ids)}"
        assert ids <= begun
        assert len({r.part_id for r in rows}) == len(rows), "part numbering restarted wrongly"

        for r in rows:  # each committed inspection is whole
            if r.image_path is not None:
                path = data_dir / r.image_path
                assert path.is_file(), f"{r.id}: image missing"
                assert sha256_file(path) == r.image_sha256 == path.stem
            else:
                assert r.fault is not None and r.decision == "check_capture"
            assert spec_counts.get(r.id, 0) == len(r.record["spec_checks"])
            assert r.id in audit_subjects
            expected = {f"{r.id}:{k}" for k in ("s3:result", "stepfunctions:start_execution", "mes:result")}
            if r.image_path:
                expected.add(f"{r.id}:s3:image")
            if r.decision in ALERT_DECISIONS:
                expected.add(f"{r.id}:sns:alert")
            assert outbox.get(r.id) == expected

        # Recovery removes exactly the files no row references, and all .tmp leftovers.
        referenced = {r.image_path for r in rows if r.image_path}
        strays = sorted(set(store.images.iter_files()) - referenced)
        tmps = sorted(p.name for p in store.images.tmp_files())
        assert strays or tmps, "no kill landed inside an image write (retried 16 times)"
        report = store.recover()
        assert report.removed_stray == strays and sorted(report.removed_tmp) == tmps
        assert report.missing_images == [] and report.audit.ok
        assert set(store.images.iter_files()) == referenced and store.images.tmp_files() == []
        verify = store.audit_verify()
        assert verify.ok, verify.reason
        assert len(audit_subjects) == len(rows)

        # And the station carries on where it stopped.
        from store_helpers import make_record

        n = store.part_counter("P") + 1
        store.record_inspection(make_record(n), None)
        assert store.count() == len(rows) + 1
        print(f"\n{kills} kills, {len(rows)} inspections, {len(begun - ids)} lost in flight, "
              f"{len(strays)} stray images, {len(tmps)} tmp files recovered")
    finally:
        store.close()


def _leftovers(data_dir: Path) -> bool:
    """Did any kill land in an image write (a .tmp file or an unreferenced image)?"""
    import sqlite3

    images = data_dir / "images"
    if any((images / ".tmp").iterdir()):
        return True
    conn = sqlite3.connect(data_dir / "station.db")
    try:
        referenced = {p for (p,) in conn.execute("SELECT image_path FROM inspections WHERE image_path IS NOT NULL")}
    finally:
        conn.close()
    on_disk = {f"images/{d.name}/{f.name}" for d in images.iterdir() if d.is_dir() and d.name != ".tmp"
               for f in d.iterdir()}
    return bool(on_disk - referenced)
