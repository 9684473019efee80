"""The database file: Alembic-owned schema, durability pragmas, one writer per data dir."""
from __future__ import annotations

import sqlite3

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect as sa_inspect

from station.store import db
from station.store.errors import StoreLocked
from station.store.schema import Base
from station.store.station_store import StationStore
from store_helpers import make_record


def test_migrations_create_the_schema(store):
    insp = sa_inspect(store.engine)
    assert {"inspections", "spec_results", "audit_log", "outbox", "alembic_version"} <= set(
        insp.get_table_names()
    )
    assert db.current_revision(store.engine) == db.head_revision()
    claim = {i["name"]: i["column_names"] for i in insp.get_indexes("outbox")}
    assert claim["ix_outbox_claim"] == ["status", "priority", "id"]
    assert {"ix_inspections_started_at": ["started_at"]}.items() <= {
        i["name"]: i["column_names"] for i in insp.get_indexes("inspections")
    }.items()
    assert [c["name"] for c in insp.get_unique_constraints("outbox")] == ["uq_outbox_idempotency_key"]


def test_migration_matches_the_orm_schema(store):
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []


def test_durability_pragmas_on_the_writer_connection(store):
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.BUSY_TIMEOUT_MS
    info = store.storage_info()
    assert (info["journal_mode"], info["synchronous"]) == ("wal", 2)
    # The WAL mode is a property of the file: a plain sqlite3 connection sees it too.
    raw = sqlite3.connect(store.db_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_writer_takes_the_write_lock_up_front(store, tmp_path):
    """BEGIN IMMEDIATE: a second writer waits (busy) instead of deadlocking half-way."""
    other = sqlite3.connect(store.db_path, timeout=0.05)
    try:
        with store.engine.begin() as conn:
            conn.exec_driver_sql("SELECT 1")  # our transaction holds the RESERVED lock now
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
    finally:
        other.close()


def test_readers_are_read_only(store):
    with store.reader.connect() as conn, pytest.raises(Exception, match="readonly|read-only|query_only"):
        conn.exec_driver_sql("DELETE FROM outbox")


def test_reopen_keeps_data_and_does_not_remigrate(tmp_path):
    with StationStore(tmp_path) as s:
        rid = s.record_inspection(make_record(1), None)
    with StationStore(tmp_path) as s:
        assert s.get(rid)["part_id"] == "P000001"
        assert db.current_revision(s.engine) == db.head_revision()


def test_a_0001_database_with_records_upgrades_in_place(tmp_path):
    """A station installed before 0002 keeps its records and outbox through the upgrade."""
    engine = db.make_engine(tmp_path / "station.db")
    try:
        with engine.begin() as conn:
            command.upgrade(db.alembic_config(conn), "0001")
    finally:
        engine.dispose()
    with StationStore(tmp_path) as s:  # opens and upgrades to head
        pass
    # a record written by an 0001 station (insert through the 0001 schema's columns only)
    engine = db.make_engine(tmp_path / "other.db")
    try:
        with engine.begin() as conn:
            command.upgrade(db.alembic_config(conn), "0001")
    finally:
        engine.dispose()
    raw = sqlite3.connect(tmp_path / "other.db")
    raw.execute(
        "insert into outbox (sink, kind, priority, payload, idempotency_key, status, attempts,"
        " next_attempt_at, created_at) values ('s3','image',3,'{}','k1','pending',0,"
        " '2026-11-26T00:00:00.000000Z','2026-11-26T00:00:00.000000Z')")
    raw.commit()
    raw.close()
    engine = db.make_engine(tmp_path / "other.db")
    try:
        db.upgrade(engine)
        assert db.current_revision(engine) == db.head_revision()
        cols = {c["name"] for c in sa_inspect(engine).get_columns("outbox")}
        assert "delivery_detail" in cols
        with engine.connect() as conn:
            row = conn.exec_driver_sql("select idempotency_key, status, delivery_detail from outbox").one()
        assert tuple(row) == ("k1", "pending", None)
        assert {"users", "labels", "line_events", "sink_status", "mes_deliveries"} <= set(
            sa_inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_downgrade_and_upgrade_again(tmp_path):
    engine = db.make_engine(tmp_path / "x.db")
    try:
        db.upgrade(engine)
        with engine.begin() as conn:
            command.downgrade(db.alembic_config(conn), "base")
        assert set(sa_inspect(engine).get_table_names()) == {"alembic_version"}
        db.upgrade(engine)
        assert "outbox" in sa_inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_one_writer_process_per_data_dir(store):
    with pytest.raises(StoreLocked, match="in use"):
        StationStore(store.data_dir)
    # Read-only users (``linestation audit verify``) open without recovering: no lock needed.
    viewer = StationStore(store.data_dir, recover=False)
    try:
        assert viewer.audit_verify().ok
    finally:
        viewer.close()


def test_a_0002_database_with_a_backlog_upgrades_to_the_sink_claim_index(tmp_path):
    """0003 adds the per-sink claim index to a station that already has a queue; the rows
    stay as they were, the claim query seeks on the new index, and downgrade drops it."""
    path = tmp_path / "station.db"
    engine = db.make_engine(path)
    try:
        with engine.begin() as conn:
            command.upgrade(db.alembic_config(conn), "0002")
    finally:
        engine.dispose()
    raw = sqlite3.connect(path)
    rows = [(sink, "k", 2, "{}", f"I{i}:{sink}", status, 0, "2026-11-26T00:00:00.000000Z",
             "2026-11-26T00:00:00.000000Z") for i in range(50)
            for sink, status in (("s3", "pending"), ("mes", "pending"), ("sns", "done"))]
    raw.executemany("insert into outbox (sink, kind, priority, payload, idempotency_key, status, attempts,"
                    " next_attempt_at, created_at) values (?,?,?,?,?,?,?,?,?)", rows)
    raw.commit()
    before = raw.execute("select id, sink, status, idempotency_key from outbox order by id").fetchall()
    raw.close()
    engine = db.make_engine(path)
    try:
        db.upgrade(engine)
        assert db.current_revision(engine) == db.head_revision() == "0003"
        idx = {i["name"]: i["column_names"] for i in sa_inspect(engine).get_indexes("outbox")}
        assert idx["ix_outbox_sink_claim"] == ["sink", "status", "priority", "id"]
        assert idx["ix_outbox_claim"] == ["status", "priority", "id"]  # kept: status counts use it
        with engine.connect() as conn:
            after = conn.exec_driver_sql("select id, sink, status, idempotency_key from outbox order by id").all()
            plan = " ".join(r[3] for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT id FROM outbox WHERE sink = 's3' AND status = 'pending' "
                "AND priority = 2 AND id > 10 ORDER BY id LIMIT 5"))
        assert [tuple(r) for r in after] == before
        assert "ix_outbox_sink_claim" in plan, plan
        with engine.begin() as conn:
            command.downgrade(db.alembic_config(conn), "0002")
        assert "ix_outbox_sink_claim" not in {i["name"] for i in sa_inspect(engine).get_indexes("outbox")}
        with engine.connect() as conn:
            assert conn.exec_driver_sql("select count(*) from outbox").scalar() == 150
    finally:
        engine.dispose()
