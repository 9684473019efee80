"""Pacing for the sync service: retry backoff, the bandwidth cap and each sink's circuit.

All three are plain thread-safe objects with an injectable clock, so their behaviour is
checked without sleeping and the engine stays free of timing arithmetic.
"""
from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

ONLINE, DEGRADED, OFFLINE = "online", "degraded", "offline"


def backoff_delay(attempts: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with *full jitter*: uniform in ``[0, min(max, base * 2**(n-1))]``.

    Full jitter (rather than a fixed exponential) spreads the retries of a backlog that
    failed together, so a server coming back is not hit by all of them at once.
    """
    n = max(1, attempts)
    ceiling = min(max_s, base_s * (2.0 ** min(n - 1, 60)))
    return (rng or random).uniform(0.0, ceiling)


class TokenBucket:
    """A bytes-per-second cap shared by every upload of the service.

    ``rate`` bytes are added per second up to ``burst``; :meth:`take` blocks until the
    requested amount is available. A request bigger than the burst is allowed to drive
    the bucket negative (then later callers wait), so one large file can never deadlock.
    """

    def __init__(self, rate_bytes_per_s: float, burst_bytes: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate_bytes_per_s <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate_bytes_per_s)
        self.burst = float(burst_bytes if burst_bytes is not None else rate_bytes_per_s)
        self._tokens = self.burst
        self._clock, self._sleep = clock, sleep
        self._last = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def take(self, nbytes: int, stop: threading.Event | None = None) -> bool:
        """Wait until ``nbytes`` may be sent; False if ``stop`` was set while waiting."""
        with self._lock:
            self._refill()
            self._tokens -= nbytes
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        # Sleep outside the lock: the debt is already booked, later callers queue behind it.
        while wait > 0:
            if stop is not None and stop.is_set():
                return False
            step = min(wait, 0.1)
            self._sleep(step)
            wait -= step
        return True


@dataclass
class CircuitSnapshot:
    state: str
    last_error: str | None
    consecutive_failures: int
    last_success_at: float | None  # wall-clock epoch seconds
    changed: bool = False


class Circuit:
    """One sink's health as the engine sees it: online, degraded (failing), offline (probing).

    - a success closes the circuit (online);
    - a retryable failure makes it degraded; ``offline_after`` of them in a row open it
      (offline): the engine stops claiming rows for the sink and only calls its
      ``probe()`` every ``probe_interval_s`` until one succeeds;
    - a permanent failure is about one row (it goes to the dead letters) and does not
      change the state, but is kept as the last error so people see it.
    """

    def __init__(self, offline_after: int = 3, probe_interval_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.offline_after = offline_after
        self.probe_interval_s = probe_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self.state = ONLINE
        self.last_error: str | None = None
        self.failures = 0
        self.last_success_at: float | None = None
        self._next_probe = 0.0
        self._dirty = True  # persist the first state too

    def success(self) -> None:
        with self._lock:
            if self.state != ONLINE:
                self._dirty = True
            self.state, self.failures = ONLINE, 0
            self.last_success_at = time.time()

    def failure(self, error: str, *, retryable: bool) -> None:
        with self._lock:
            self.last_error = error
            self._dirty = True
            if not retryable:
                return
            self.failures += 1
            new = OFFLINE if self.failures >= self.offline_after else DEGRADED
            if new == OFFLINE and self.state != OFFLINE:
                self._next_probe = self._clock() + self.probe_interval_s
            self.state = new

    def may_claim(self) -> bool:
        return self.state != OFFLINE

    def probe_due(self) -> bool:
        with self._lock:
            return self.state == OFFLINE and self._clock() >= self._next_probe

    def probe_failed(self, error: str) -> None:
        with self._lock:
            self.last_error = error
            self._next_probe = self._clock() + self.probe_interval_s

    def probe_succeeded(self) -> None:
        """Back to degraded: rows flow again, and the next real delivery decides online."""
        with self._lock:
            if self.state == OFFLINE:
                self.state, self.failures = DEGRADED, self.offline_after - 1
                self._dirty = True

    def snapshot(self) -> CircuitSnapshot:
        """The current state; ``changed`` says whether it changed since the last snapshot."""
        with self._lock:
            snap = CircuitSnapshot(self.state, self.last_error, self.failures, self.last_success_at, self._dirty)
            self._dirty = False
            return snap
