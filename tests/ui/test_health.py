"""Health and sync state as the sync service leaves them in the database."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from PySide6.QtCore import Qt
from sqlalchemy import delete, insert

from conftest import make_user, sign_in
from station.store.schema import SinkStatus
from station.ui.station_status import read_sync_state


def _sinks(store, *rows: tuple[str, str, datetime]) -> None:
    with store.engine.begin() as conn:
        conn.execute(delete(SinkStatus.__table__))
        if rows:
            conn.execute(insert(SinkStatus.__table__), [
                {"sink": s, "state": st, "updated_at": at, "last_success_at": at,
                 "last_error": None if st == "online" else "connection refused"} for s, st, at in rows])


def test_sync_state_from_outbox_and_sink_status(qtbot, station_window):
    win, ctx = station_window()
    make_user(ctx, "olga", "operator")
    sign_in(qtbot, win, "olga")
    op = win.pages["operator"]
    for n in range(2):
        qtbot.mouseClick(op.trigger_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda n=n: len(op.latency_ms) > n, timeout=10_000)
    store = ctx.store
    now = datetime.now(timezone.utc)
    pending = store.outbox_counts().get("pending", 0)
    assert pending > 0

    s = read_sync_state(store, stale_s=60)
    assert s.headline == "queued locally" and s.waiting == pending and s.oldest_age_s < 60
    _sinks(store, ("s3", "online", now), ("sns", "online", now))
    assert read_sync_state(store, 60).headline == "online"
    _sinks(store, ("s3", "online", now), ("sns", "offline", now))
    assert read_sync_state(store, 60).headline == "degraded"
    _sinks(store, ("s3", "online", now - timedelta(hours=1)))
    stale = read_sync_state(store, 60)
    assert stale.headline == "offline" and not stale.service_alive

    # what the operator and the status bar show
    op.refresh_sync()
    qtbot.waitUntil(lambda: "OFFLINE" in op.sync.headline.text(), timeout=5000)
    assert f"{pending} records waiting" in op.sync.detail.text()
    win.health_bar.refresh()
    qtbot.waitUntil(lambda: "NOT responding" in win.health_bar.labels["sync"].text(), timeout=5000)
    _sinks(store, ("s3", "online", now))
    win.health_bar.refresh()
    qtbot.waitUntil(lambda: "alive (online)" in win.health_bar.labels["sync"].text(), timeout=5000)
    bar = win.health_bar.last
    assert bar.camera_connected and bar.model_loaded and bar.disk_free_gb > 0
    assert ctx.runtime.detector.model_id in win.health_bar.labels["model"].text()
