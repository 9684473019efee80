"""The station's durable local record: SQLite (WAL, synchronous=FULL, Alembic-managed),
content-addressed image files, the transactional outbox and the hash-chained audit log.

Main entry points (imported lazily, so ``station.store.schema`` stays cheap for readers
such as ``cloudsync``)::

    from station.store import StationStore, InspectionRecord, StoreError
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "StationStore": "station.store.station_store",
    "RecoveryReport": "station.store.station_store",
    "InspectionRecord": "station.store.record",
    "new_inspection_id": "station.store.ids",
    "AuditReport": "station.store.audit",
    "PngOptions": "station.store.images",
    "StoredImage": "station.store.images",
    "StoreError": "station.store.errors",
    "StoreDiskFull": "station.store.errors",
    "StoreLocked": "station.store.errors",
    "DuplicateInspection": "station.store.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'station.store' has no attribute {name!r}")
