"""Writers meet: threads of this process, and the sync service's own process."""
from __future__ import annotations

import sqlite3
import threading
import time

from store_helpers import make_record, random_image


def test_threads_recording_at_once_keep_one_chain(store, rng):
    images = [random_image(rng, (64, 64)) for _ in range(40)]
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(offset, 40, 4):
                store.record_inspection(make_record(i), images[i])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count() == 40
    report = store.audit_verify()
    assert report.ok and report.count == 40


def test_commit_waits_for_the_sync_process_write_lock(store):
    """cloudsync updates outbox rows from its own connection; the station waits, not fails."""
    first = store.record_inspection(make_record(1), None)
    locked, release = threading.Event(), threading.Event()

    def sync_service() -> None:
        conn = sqlite3.connect(store.db_path, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE outbox SET status = 'in_flight', attempts = attempts + 1 "
                         "WHERE inspection_id = ?", (first,))
            locked.set()
            release.wait(5)
            conn.execute("COMMIT")
        finally:
            conn.close()

    t = threading.Thread(target=sync_service)
    t.start()
    assert locked.wait(5)
    threading.Timer(0.3, release.set).start()
    t0 = time.monotonic()
    second = store.record_inspection(make_record(2), None)
    waited = time.monotonic() - t0
    t.join()
    assert waited >= 0.25 and store.get(second) is not None
    assert store.outbox_counts() == {"in_flight": 3, "pending": 3}  # no image: 3 rows each
