"""An asyncio event loop on its own daemon thread, for the line servers (Modbus, OPC UA).

The station's cycle is synchronous; the protocol stacks are asyncio. Each server owns one
of these: it starts the loop, runs its coroutines on it from the station's threads, and
stops and closes it on ``close()`` (also when starting failed halfway).
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class LoopThread:
    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        """Run ``coro`` on the loop and wait for its result (raises its exception)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def submit(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Schedule ``coro`` on the loop without waiting."""
        asyncio.run_coroutine_threadsafe(coro, self.loop)

    def shutdown(self, closing: Callable[[], Coroutine[Any, Any, Any]] | None, timeout_s: float, what: str) -> None:
        """A server's close(): await ``closing()`` on the loop if it still runs (a failure is
        logged, never raised: closing must go on), then stop the loop."""
        if closing is not None and self.alive:
            try:
                self.run(closing(), timeout_s)
            except Exception:
                log.exception("%s failed", what)
        self.stop()

    def stop(self) -> None:
        """Stop the loop, join the thread and close the loop (idempotent)."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
        if not self.loop.is_running() and not self.loop.is_closed():
            self.loop.close()
