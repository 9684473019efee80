"""What the health bar and the operator screen show about the station (Qt-free queries).

Read on the task runner, never on the GUI thread: the sync state comes from the outbox and
the ``sink_status`` table the sync service keeps (the service is a separate process; the
station sees it only through the database), the rest from the running station.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select

from station.inspect.states import CycleState
from station.runtime import StationRuntime
from station.store.schema import OutboxRow, SinkStatus
from station.store.station_store import StationStore


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class SyncState:
    """The sync picture: what waits locally and what the sync service last said."""

    waiting: int  # outbox rows not yet confirmed by their sink (pending + in flight)
    oldest_waiting_at: datetime | None
    dead: int  # rows a sink refused for good (need a person)
    sinks: list[dict[str, Any]] = field(default_factory=list)
    service_alive: bool = False  # some sink_status row was updated recently
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def configured(self) -> bool:
        """Has a sync service ever reported? If not, records are only queued locally."""
        return bool(self.sinks)

    @property
    def headline(self) -> str:
        """online / degraded / offline / queued locally."""
        if not self.configured:
            return "queued locally"
        if not self.service_alive:
            return "offline"
        states = {s["state"] for s in self.sinks}
        if states == {"online"}:
            return "online"
        return "offline" if states == {"offline"} else "degraded"

    @property
    def oldest_age_s(self) -> float | None:
        if self.oldest_waiting_at is None:
            return None
        return max(0.0, (self.now - self.oldest_waiting_at).total_seconds())


def read_sync_state(store: StationStore, stale_s: float, now: datetime | None = None) -> SyncState:
    now = now or datetime.now(timezone.utc)
    with store.reader.connect() as conn:
        waiting, oldest = conn.execute(
            select(func.count(), func.min(OutboxRow.created_at))
            .where(OutboxRow.status.in_(("pending", "in_flight")))).one()
        dead = conn.execute(select(func.count()).select_from(OutboxRow)
                            .where(OutboxRow.status == "dead")).scalar_one()
        table = SinkStatus.__table__
        rows = conn.execute(select(*table.c).order_by(table.c.sink)).all()
        sinks = [{"sink": r.sink, "state": r.state, "last_error": r.last_error,
                  "last_success_at": _utc(r.last_success_at), "updated_at": _utc(r.updated_at)}
                 for r in rows]
    alive = any(s["updated_at"] and now - s["updated_at"] <= timedelta(seconds=stale_s) for s in sinks)
    return SyncState(int(waiting), _utc(oldest), int(dead), sinks, alive, now)


@dataclass(frozen=True)
class Health:
    camera_serial: str
    camera_connected: bool
    cycle_state: str
    fault_reason: str | None
    model_id: str
    model_version: str
    disk_free_gb: float
    disk_total_gb: float
    disk_low: bool
    sync: SyncState

    @property
    def model_loaded(self) -> bool:
        return bool(self.model_id)


def read_health(runtime: StationRuntime, *, stale_s: float, disk_warn_gb: float,
                last_fault_kind: str | None = None) -> Health:
    """The station's health; ``last_fault_kind`` is the latest inspection's capture fault."""
    cycle = runtime.cycle
    try:
        serial = runtime.camera.describe().serial
    except Exception:  # noqa: BLE001 - a lost camera may not even describe itself
        serial = "?"
    reason = cycle.fault_reason
    connected = not (last_fault_kind == "disconnected"
                     or (cycle.state is CycleState.FAULTED and reason is not None and "camera" in reason))
    usage = shutil.disk_usage(runtime.data_dir)
    free_gb = usage.free / 1e9
    det = runtime.detector
    return Health(
        camera_serial=serial, camera_connected=connected, cycle_state=cycle.state.value,
        fault_reason=reason, model_id=getattr(det, "model_id", "") or "",
        model_version=str(getattr(det, "model_version", "") or ""),
        disk_free_gb=free_gb, disk_total_gb=usage.total / 1e9, disk_low=free_gb < disk_warn_gb,
        sync=read_sync_state(runtime.store, stale_s),
    )


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
