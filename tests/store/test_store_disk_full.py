"""A full disk is a clear StoreDiskFull, commits nothing, and the store carries on after."""
from __future__ import annotations

import errno

import pytest

from station.store import images as images_mod
from station.store.errors import StoreDiskFull
from store_helpers import fault_record, make_record, random_image


def _state(store):
    with store.reader.connect() as conn:
        return {t: conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar()
                for t in ("inspections", "spec_results", "audit_log", "outbox")}


@pytest.mark.parametrize("layer", ["_write_fd", "_fsync_fd"])
def test_image_write_fails_with_enospc(store, rng, monkeypatch, layer):
    store.record_inspection(make_record(0), random_image(rng, (64, 64)))
    before, files_before = _state(store), set(store.images.iter_files())

    def full(*_a):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(images_mod, layer, full)
    with pytest.raises(StoreDiskFull, match="disk full"):
        store.record_inspection(make_record(1), random_image(rng, (64, 64)))
    assert _state(store) == before  # nothing committed
    assert set(store.images.iter_files()) == files_before and store.images.tmp_files() == []
    # A capture fault (no image) can still be recorded while the image disk is full.
    store.record_inspection(fault_record(2), None)
    monkeypatch.undo()
    rid = store.record_inspection(make_record(3), random_image(rng, (64, 64)))
    assert store.get(rid)["image"] is not None and store.audit_verify().ok


def test_reserve_for_the_database_refuses_images_early(store, rng, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(StoreDiskFull, match="reserved"):
        store.record_inspection(make_record(1), random_image(rng, (64, 64)))
    assert _state(store)["inspections"] == 0


def test_database_full_commits_nothing_and_removes_the_image(store, rng):
    store.record_inspection(make_record(0), None)
    before, files_before = _state(store), set(store.images.iter_files())
    # SQLite's own "database or disk is full" (SQLITE_FULL), reached for real by capping the
    # writer connection's page count at the current size.
    with store.engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
        conn.exec_driver_sql(f"PRAGMA max_page_count={pages}")
    with pytest.raises(StoreDiskFull, match="disk full"):
        for i in range(1, 50):  # the first commits may still fit into free pages
            store.record_inspection(make_record(i), random_image(rng, (64, 64)))
            before, files_before = _state(store), set(store.images.iter_files())
    assert _state(store) == before and set(store.images.iter_files()) == files_before
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA max_page_count=1073741823")
    store.record_inspection(make_record(100), random_image(rng, (64, 64)))
    assert store.audit_verify().ok and store.recover().removed_stray == []
