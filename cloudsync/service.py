"""The sync service process: one per data directory, until stopped.

:func:`open_service` builds the engine from the config (queue, sinks, bandwidth cap) and
takes ``sync.lock`` in the data directory, so a second service on the same station
refuses to start instead of racing the first for claims. The station's own lock is not
needed: the service only reads images and updates outbox / sink_status rows.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from cloudsync.engine import EngineSettings, SyncEngine
from cloudsync.limits import TokenBucket
from cloudsync.outbox_queue import OutboxQueue
from cloudsync.registry import SinkContext, build_sinks
from station.durable import try_lock_file

if TYPE_CHECKING:
    from station.config import LineStationConfig

log = logging.getLogger(__name__)
LOCK_FILENAME = "sync.lock"


class ServiceLocked(RuntimeError):
    """Another sync service already runs on this data directory."""


class SyncService:
    def __init__(self, engine: SyncEngine, lock_fd: int) -> None:
        self.engine = engine
        self._lock_fd: int | None = lock_fd

    def start(self) -> None:
        self.engine.start()

    def stop(self, timeout_s: float = 60.0) -> None:
        try:
            if self.engine.started:
                self.engine.stop(timeout_s)
            self.engine.queue.close()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None


def settings_from(cfg: LineStationConfig) -> EngineSettings:
    s = cfg.sync
    return EngineSettings(backoff_base_s=s.backoff_base_s, backoff_max_s=s.backoff_max_s, lease_s=s.lease_s,
                          poll_interval_s=s.poll_interval_s, offline_after_failures=s.offline_after_failures,
                          probe_interval_s=s.probe_interval_s)


def take_lock(data_dir: Path) -> int:
    fd = try_lock_file(Path(data_dir) / LOCK_FILENAME)
    if fd is None:
        raise ServiceLocked(f"a sync service already runs on {data_dir}")
    return fd


def open_service(cfg: LineStationConfig, data_dir: Path) -> SyncService:
    """Everything the service needs, not yet started. Raises ServiceLocked, FileNotFoundError."""
    data_dir = Path(data_dir)
    queue = OutboxQueue(data_dir)  # FileNotFoundError before taking the lock: nothing to sync
    try:
        fd = take_lock(data_dir)
    except BaseException:
        queue.close()
        raise
    try:
        bw = cfg.sync.bandwidth_bytes_per_s
        limiter = TokenBucket(bw) if bw else None  # burst: one second of the cap
        sinks = build_sinks(cfg, data_dir, SinkContext(limiter=limiter))
        if not sinks:
            log.warning("no sink is enabled in the sync section: rows stay queued")
        return SyncService(SyncEngine(queue, sinks, settings_from(cfg)), fd)
    except BaseException:
        os.close(fd)
        queue.close()
        raise
