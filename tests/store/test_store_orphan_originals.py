"""Kept X-ray originals after a crash: the one no record names goes, every named one stays.

A child process records X-ray parts through the station's own recorder (original kept
first, then the record committed) and is SIGKILLed after keeping one more original but
before its commit; the parent then runs :meth:`StationStore.recover`.
"""
from __future__ import annotations

import hashlib
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from station.store.images import sha256_file
from station.store.station_store import StationStore
from store_helpers import make_record

CHILD = Path(__file__).with_name("original_crash_writer.py")


def _crash_after_keeping(data_dir: Path, seed: int, count: int, crash: str) -> tuple[list[str], str]:
    """Run the child until it kept the crashing part's original, SIGKILL it there."""
    committed: list[str] = []
    with subprocess.Popen([sys.executable, str(CHILD), str(data_dir), str(seed), str(count), crash],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          cwd=CHILD.parent) as proc:
        try:
            deadline = time.monotonic() + 60
            while True:
                ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
                line = proc.stdout.readline() if ready else ""
                if not line:
                    why = proc.stderr.read() if proc.poll() is not None else "timeout"
                    raise AssertionError(f"child stopped before keeping the original: {why}")
                word, rel, *rest = line.split()
                if word == "committed":
                    committed.append(rel)
                elif word == "kept":
                    assert rest == ["1"], "the original was not on disk before the commit"
                    break
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == -signal.SIGKILL
    return committed, rel


def _snapshot(data_dir: Path, rels: list[str]) -> dict[str, bytes]:
    return {rel: (data_dir / rel).read_bytes() for rel in rels}


def test_recover_removes_the_orphaned_original_and_keeps_every_named_one(tmp_path):
    data_dir = tmp_path / "data"
    # 1st crash: the dying part's file is new bytes -> an original no record names.
    named, orphan = _crash_after_keeping(data_dir, seed=1, count=3, crash="new")
    # 2nd crash (same data dir, no recovery in between): the dying part repeats the bytes of
    # a recorded part, so its "kept" original IS the named file and must survive.
    named2, repeated = _crash_after_keeping(data_dir, seed=2, count=2, crash="0")
    named += named2
    assert orphan not in named and repeated == named2[0]
    before = _snapshot(data_dir, named)
    with StationStore(data_dir, recover=False) as s:
        # One record's deliveries are done, the others still wait in the outbox: both kinds stay.
        with s.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE outbox SET status = 'done' WHERE inspection_id = "
                                 "(SELECT id FROM inspections ORDER BY id LIMIT 1)")
        assert (data_dir / orphan).is_file()
        foreign = data_dir / "originals" / "ab" / "notes.txt"
        foreign.parent.mkdir(parents=True, exist_ok=True)
        foreign.write_text("not ours")

        report = s.recover()

        assert report.removed_originals == [orphan]
        assert report.missing_originals == [] and report.ok
        assert not (data_dir / orphan).exists()
        assert set(s.images.iter_originals()) == set(named) | {foreign.relative_to(data_dir).as_posix()}
        for rel, data in before.items():  # byte for byte, and still under their own hash
            assert (data_dir / rel).read_bytes() == data
            assert sha256_file(data_dir / rel) == Path(rel).stem == hashlib.sha256(data).hexdigest()
        assert foreign.read_text() == "not ours"  # not a file the store wrote: left alone
        entry = s.audit_entries()[-1]
        assert entry["action"] == "store.recovered" and entry["payload"]["removed_originals"] == [orphan]
        assert s.recover().removed_originals == []  # nothing left to do the second time


def test_recover_at_open_reports_a_named_original_that_is_gone(tmp_path):
    with StationStore(tmp_path) as s:
        kept = s.images.put_original(b"II*\0 an x-ray file", "tif")
        s.record_inspection(make_record(1, meta={"original": {"stored": kept.relpath}}), None)
    (tmp_path / kept.relpath).unlink()
    with StationStore(tmp_path) as s:
        report = s.recovery_report
        assert not report.ok and report.missing_originals == [kept.relpath]
        assert report.removed_originals == []
