"""The delivery engine: per-sink dispatchers and worker threads over the outbox queue.

For every configured sink one dispatcher thread claims due rows (most urgent first) and
hands them to that sink's worker pool; a bounded number of rows is held at a time, so
memory does not grow with the backlog. A worker delivers one row and books the outcome:

- confirmed -> ``done`` with what the sink answered (``delivery_detail``);
- :class:`DeliveryError` retryable (network, 5xx, throttling) -> back to ``pending`` after
  an exponential backoff with full jitter (or the server's Retry-After if longer);
- :class:`DeliveryError` permanent -> ``dead`` with the reason (``sync retry-dead``);
- any other exception is a bug in a sink: treated as retryable, logged with its traceback.

Each sink has a :class:`~cloudsync.limits.Circuit`; while it is offline the dispatcher
claims nothing and only probes. Outcomes and circuit states are written in small batched
transactions by one flusher thread (see :mod:`cloudsync.outbox_queue`).
"""
from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cloudsync.limits import Circuit, backoff_delay
from cloudsync.outbox_queue import OutboxQueue
from cloudsync.sinks.base import Delivered, DeliveryError, OutboxItem, Sink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSettings:
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    lease_s: float = 300.0
    poll_interval_s: float = 1.0
    offline_after_failures: int = 3
    probe_interval_s: float = 5.0
    flush_interval_s: float = 0.05
    status_interval_s: float = 2.0
    hold_per_worker: int = 4  # rows claimed ahead per worker (bounds memory and lease use)


def workers_of(sink: Sink) -> int:
    return max(1, int(getattr(sink, "workers", 1)))


class SinkRunner:
    """One sink's dispatcher thread and worker pool."""

    def __init__(self, sink: Sink, queue: OutboxQueue, settings: EngineSettings,
                 stop: threading.Event, rng: random.Random) -> None:
        self.sink, self.queue, self.settings, self.stop = sink, queue, settings, stop
        self.rng = rng
        self.workers = workers_of(sink)
        self.circuit = Circuit(settings.offline_after_failures, settings.probe_interval_s)
        self.batch_size = max(1, int(getattr(sink, "batch_size", 1)))
        self.capacity = self.workers * settings.hold_per_worker * self.batch_size
        # Claim again only when half the rows held are done: one claim transaction per
        # capacity/2 deliveries instead of one per finished delivery (each is a write
        # transaction the station's commits may queue behind).
        self.low_water = self.capacity - max(1, self.capacity // 2)
        self._held: dict[int, OutboxItem] = {}
        self._held_lock = threading.Lock()
        self._room = threading.Condition(self._held_lock)
        self._wake = threading.Event()
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix=f"sync-{sink.name}")
        self.thread = threading.Thread(target=self._dispatch, name=f"sync-{sink.name}-dispatch", daemon=True)
        self.delivered = self.failed = self.dead = 0

    # --- dispatcher -------------------------------------------------------------------
    def _dispatch(self) -> None:
        last_renew = time.monotonic()
        while not self.stop.is_set():
            try:
                if not self.circuit.may_claim():
                    self._probe_if_due()
                    self.stop.wait(0.1)
                    continue
                with self._room:
                    while len(self._held) > self.low_water and not self.stop.is_set():
                        self._room.wait(0.2)
                    free = self.capacity - len(self._held)
                if self.stop.is_set():
                    break
                items = self.queue.claim(self.sink.name, free, self.settings.lease_s)
                with self._held_lock:
                    self._held.update((item.id, item) for item in items)
                for start in range(0, len(items), self.batch_size):
                    self.pool.submit(self._deliver, items[start:start + self.batch_size])
                if time.monotonic() - last_renew > self.settings.lease_s / 3:
                    with self._held_lock:
                        ids = list(self._held)
                    self.queue.renew(ids, self.settings.lease_s)
                    last_renew = time.monotonic()
                if not items:
                    # Idle: sleep until the poll interval, or until rows this sink may be
                    # waiting for were delivered (wake(): at most once per outcome flush).
                    self._wake.wait(self.settings.poll_interval_s)
                    self._wake.clear()
            except Exception:  # the database was busy for too long, etc.: keep the service alive
                log.exception("sink %s: dispatcher error", self.sink.name)
                self.stop.wait(1.0)

    def _probe_if_due(self) -> None:
        if not self.circuit.probe_due():
            return
        try:
            self.sink.probe()
        except DeliveryError as exc:
            self.circuit.probe_failed(str(exc))
        except Exception as exc:
            self.circuit.probe_failed(f"{type(exc).__name__}: {exc}")
        else:
            log.info("sink %s: probe succeeded, resuming", self.sink.name)
            self.circuit.probe_succeeded()

    def wake(self) -> None:
        self._wake.set()

    # --- workers ----------------------------------------------------------------------
    def _deliver(self, items: list[OutboxItem]) -> None:
        """Deliver one row (or one batch, for a sink with ``batch_size`` > 1) and book it."""
        try:
            if self.stop.is_set() or not self.circuit.may_claim():
                for item in items:
                    self.queue.release(item.id)  # not tried: no attempt, no backoff
                return
            if len(items) == 1:
                outcomes = [self._attempt(items[0])]
            else:
                try:
                    outcomes = self.sink.deliver_batch(items)
                except Exception as exc:  # a sink bug must not lose the rows: retry, and say why
                    log.exception("sink %s: unexpected error delivering a batch", self.sink.name)
                    outcomes = [exc] * len(items)
            for item, outcome in zip(items, outcomes, strict=True):
                self._book(item, outcome)
            if getattr(self.sink, "confirm_immediately", False) and any(
                    isinstance(o, Delivered) for o in outcomes):
                # Shrinks the window in which a crash would send it again to one commit.
                self.queue.flush()
        finally:
            with self._room:
                for item in items:
                    self._held.pop(item.id, None)
                self._room.notify()

    def _attempt(self, item: OutboxItem) -> Delivered | Exception:
        try:
            return self.sink.deliver(item)
        except Exception as exc:
            return exc

    def _book(self, item: OutboxItem, outcome: Delivered | Exception) -> None:
        if isinstance(outcome, Delivered):
            self.circuit.success()
            detail = dict(outcome.detail)
            if outcome.duplicate:
                detail["duplicate"] = True
            self.queue.done(item.id, detail, item.inspection_id)
            self.delivered += 1
        elif isinstance(outcome, DeliveryError):
            self._failed(item, str(outcome), outcome.retryable, outcome.retry_after_s)
        else:  # a sink bug must not lose the row: retry, and say why
            log.error("sink %s: unexpected error delivering %s", self.sink.name, item.idempotency_key,
                      exc_info=outcome)
            self._failed(item, f"{type(outcome).__name__}: {outcome}", True, None)

    def _failed(self, item: OutboxItem, error: str, retryable: bool, retry_after: float | None) -> None:
        self.circuit.failure(error, retryable=retryable)
        if retryable:
            delay = backoff_delay(item.attempts, self.settings.backoff_base_s, self.settings.backoff_max_s, self.rng)
            self.queue.retry(item.id, error, max(delay, retry_after or 0.0))
            self.failed += 1
        else:
            log.warning("sink %s: %s is a dead letter: %s", self.sink.name, item.idempotency_key, error)
            self.queue.dead(item.id, error)
            self.dead += 1

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def join(self, timeout_s: float) -> None:
        self.thread.join(timeout_s)
        self.pool.shutdown(wait=True, cancel_futures=True)
        with self._held_lock:
            left = list(self._held.values())
            self._held.clear()
        for item in left:  # claimed but never started (cancelled): hand back untried
            self.queue.release(item.id)

    def publish_status(self, force: bool = False, running: bool = True) -> None:
        snap = self.circuit.snapshot()
        if not (force or snap.changed):
            return
        self.queue.set_sink_status(self.sink.name, snap.state, snap.last_error, snap.last_success_at, {
            "pid": os.getpid(), "running": running, "workers": self.workers,
            "consecutive_failures": snap.consecutive_failures,
            "delivered": self.delivered, "retried": self.failed, "dead": self.dead,
        })


class SyncEngine:
    """Runs every sink until :meth:`stop`; the one object the service command drives."""

    def __init__(self, queue: OutboxQueue, sinks: dict[str, Sink], settings: EngineSettings | None = None,
                 seed: int | None = None) -> None:
        self.queue = queue
        self.sinks = sinks
        self.settings = settings or EngineSettings()
        self._stop = threading.Event()
        rng = random.Random(seed)
        self.runners = {name: SinkRunner(s, queue, self.settings, self._stop, random.Random(rng.random()))
                        for name, s in sinks.items()}
        self._flusher = threading.Thread(target=self._flush_loop, name="sync-flush", daemon=True)
        self.started = False

    def start(self) -> None:
        released = self.queue.release_all_claims()
        if released:
            log.warning("released %d claims left by a previous sync process", released)
        for r in self.runners.values():
            r.start()
        self._flusher.start()
        self.started = True

    def _flush_loop(self) -> None:
        last_status = 0.0
        while not self._stop.wait(self.settings.flush_interval_s):
            try:
                force = time.monotonic() - last_status > self.settings.status_interval_s
                for r in self.runners.values():
                    r.publish_status(force=force)
                if force:
                    last_status = time.monotonic()
                if self.queue.flush():
                    for r in self.runners.values():  # a delivery may unblock rows that require it
                        r.wake()
            except Exception:
                log.exception("flushing outcomes failed; they stay buffered and are retried")

    def stop(self, timeout_s: float = 60.0) -> None:
        """Finish deliveries in progress, hand back unstarted claims, write everything."""
        self._stop.set()
        for r in self.runners.values():
            r.wake()
        deadline = time.monotonic() + timeout_s
        for r in self.runners.values():
            r.join(max(0.1, deadline - time.monotonic()))
        if self._flusher.is_alive():
            self._flusher.join(5.0)
        for r in self.runners.values():
            r.publish_status(force=True, running=False)
        self.queue.flush()
        for s in self.sinks.values():
            try:
                s.close()
            except Exception:
                log.exception("closing sink %s failed", s.name)

    def request_stop(self) -> None:
        """Ask the service to stop (safe from a signal handler); :meth:`stop` does the work."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self, timeout_s: float | None = None) -> bool:
        return self._stop.wait(timeout_s)
