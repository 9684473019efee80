"""The line's own thread: runs the inspection cycle so the GUI never waits for it (Qt-free).

Start / stop / manual trigger are commands to one long-lived worker thread, which owns every
call into :class:`~station.inspect.cycle.InspectionCycle`. With a software trigger the
thread paces the line at ``rate_hz``; with a hardware trigger the camera's ``grab`` waits
for the line's edge and the pace is the line's. What the cycle produced reaches the
screens through the cycle's inspection listeners (after the record committed) and the
:class:`LatestResult` slot the live view pulls from on its timer.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from station.capture.base import TriggerMode
from station.inspect.cycle import InspectionOutcome
from station.inspect.states import CycleState
from station.runtime import StationRuntime, part_contexts
from station.ui.imaging import heat_overlay, result_thumbnail

log = logging.getLogger(__name__)

@dataclass
class ShownResult:
    """What the screens need from one committed inspection (built on the line thread)."""

    outcome: InspectionOutcome
    committed_at: float  # time.perf_counter() right after the record committed
    thumb: np.ndarray | None
    overlay: np.ndarray | None = None  # RGBA heatmap tint (see imaging.heat_overlay)
    seq: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def decision(self) -> str:
        return self.outcome.decision.value


class LatestResult:
    """A one-slot mailbox: the line thread overwrites, the live view's timer takes the newest.

    Never blocks the writer for more than a pointer swap; old results are simply dropped
    (the live view shows the latest frame, not every frame).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._item: ShownResult | None = None
        self._seq = 0

    def put(self, item: ShownResult) -> int:
        with self._lock:
            self._seq += 1
            item.seq = self._seq
            self._item = item
            return self._seq

    def newer_than(self, seq: int) -> ShownResult | None:
        with self._lock:
            item = self._item
        return item if item is not None and item.seq > seq else None

    @property
    def seq(self) -> int:
        return self._seq


class LatestFrame:
    """A one-slot mailbox for preview frames: a camera's free-running stream between
    triggers, if a source provides one. The live view shows the newest of these and of the
    inspected frames; a new inspection result always wins its tick (it has the overlay)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._image: np.ndarray | None = None
        self._seq = 0

    def put(self, image: np.ndarray) -> int:
        with self._lock:
            self._seq += 1
            self._image = image
            return self._seq

    def newer_than(self, seq: int) -> tuple[int, np.ndarray] | None:
        with self._lock:
            if self._image is None or self._seq <= seq:
                return None
            return self._seq, self._image


class LineRunner:
    """Runs the cycle on its own thread; thread-safe commands; ``close()`` joins it."""

    def __init__(self, runtime: StationRuntime, *, rate_hz: float = 2.0,
                 on_result: Callable[[ShownResult], None] | None = None,
                 on_error: Callable[[BaseException], None] | None = None,
                 thumbnails: bool = True) -> None:
        self.runtime = runtime
        self.cycle = runtime.cycle
        self.period_s = 1.0 / rate_hz
        self.latest = LatestResult()
        self.preview = LatestFrame()
        self._on_result = on_result
        self._on_error = on_error
        self._thumbnails = thumbnails
        self._contexts = part_contexts(runtime.store, runtime.cfg.station.lot)
        self._wake = threading.Condition()
        self._running = False
        self._triggers = 0
        self._closing = False
        self.inspected = 0
        self.cycle.add_inspection_listener(self._listener)
        self._thread = threading.Thread(target=self._loop, name="linestation-line", daemon=True)
        self._thread.start()

    # --- commands (any thread) ------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._running

    @property
    def hardware_paced(self) -> bool:
        return self.cycle.trigger_mode is not TriggerMode.SOFTWARE

    def start(self) -> None:
        """Run continuously (at ``rate_hz`` on a software trigger)."""
        with self._wake:
            self._running = True
            self._wake.notify_all()

    def stop(self) -> None:
        """Stop after the inspection in progress."""
        with self._wake:
            self._running = False
            self._wake.notify_all()

    def trigger(self) -> None:
        """Inspect one part now (manual trigger)."""
        with self._wake:
            self._triggers += 1
            self._wake.notify_all()

    def close(self, timeout_s: float = 10.0) -> None:
        with self._wake:
            self._closing = True
            self._running = False
            self._wake.notify_all()
        self.cycle.stop()  # a hardware-triggered grab in progress returns at its timeout
        self._thread.join(timeout_s)
        try:
            self.cycle.remove_inspection_listener(self._listener)
        except ValueError:
            pass
        if self._thread.is_alive():
            log.error("line thread did not stop within %.1f s", timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # --- the line thread ------------------------------------------------------------------
    def _listener(self, out: InspectionOutcome) -> None:
        t = time.perf_counter()
        thumb = None
        if self._thumbnails and out.frame is not None:
            thumb = result_thumbnail(self.runtime.cfg, out.frame.image, out.context.recipe or out.cycle.recipe,
                                     pixel_format=out.frame.pixel_format)
        heat = out.detection.heatmap if out.detection is not None else None
        overlay = heat_overlay(heat) if heat is not None and out.decision.value != "pass" else None
        item = ShownResult(out, t, thumb, overlay)
        self.latest.put(item)
        self.inspected += 1
        if self._on_result is not None:
            self._on_result(item)

    def _next_due(self, last: float) -> float:
        return last + self.period_s if not self.hardware_paced else 0.0

    def _loop(self) -> None:
        last = 0.0
        while True:
            with self._wake:
                while not self._closing:
                    if self._triggers:
                        self._triggers -= 1
                        break
                    if self._running:
                        wait = self._next_due(last) - time.perf_counter()
                        if wait <= 0:
                            break
                        self._wake.wait(wait)
                    else:
                        self._wake.wait()
                if self._closing:
                    return
            last = time.perf_counter()
            try:
                self._inspect_one()
            except BaseException as exc:  # noqa: BLE001 - reported, the line stops
                with self._wake:
                    self._running = False
                    self._triggers = 0
                log.exception("line stopped")
                if self._on_error is not None:
                    self._on_error(exc)

    def _inspect_one(self) -> None:
        state = self.cycle.state
        if state in (CycleState.IDLE, CycleState.FAULTED):
            self.cycle.arm()
        elif state is CycleState.SUSPENDED:
            return
        self.cycle.inspect(next(self._contexts))
