"""The inspection cycle: trigger -> capture -> spec checks -> detect -> decide -> record -> notify.

An explicit state machine (see :mod:`station.inspect.states`). Three ways to interrupt it
are deliberately different, as in bluesky's run engine:

- ``stop()``: finish the inspection in progress, record it, then go idle.
- ``abort()``: give up the inspection in progress at the next stage boundary; it is
  recorded as an aborted capture fault (the part got no verdict), then the cycle goes idle.
- ``suspend(reason, source)``: an interlock (door open, X-ray shutter), a full disk: finish
  the inspection in progress, then hold without accepting triggers until every source that
  suspended it has called ``resume(source)``. Suspensions are keyed by source so clearing
  the door interlock does not resume a station held for a full disk.

Listeners are told about state changes and about each inspection *after* its commit, so
nothing shown to an operator can be lost by a crash.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from calibration.roi import Roi
from station.capture.base import (
    BadImage,
    CameraDisconnected,
    CameraDriver,
    CaptureError,
    CaptureTimeout,
    Frame,
    NoMoreFrames,
    PartContext,
    TriggerMode,
)
from station.detect.base import DetectionResult, Detector
from station.inspect.decide import Decision, DecisionPolicy
from station.inspect.shadow import ShadowRunner
from station.inspect.states import CycleState, check_transition

log = logging.getLogger(__name__)


class SpecReportLike(Protocol):
    passed: bool
    alignment: np.ndarray | None

    def to_json(self) -> list[dict[str, Any]]: ...


class SpecChecker(Protocol):
    """Checks a frame against its capture spec (calibration profile)."""

    version: str

    def check(self, frame: Frame) -> SpecReportLike: ...


class InspectionStore(Protocol):
    def record(self, outcome: InspectionOutcome) -> str: ...


class CycleAborted(Exception):
    pass


class CycleBusy(RuntimeError):
    """A command that needs the cycle between inspections came while one was running."""


class SourceExhausted(Exception):
    """A finite source (a replay folder) has no more frames: there is no part to inspect."""


@dataclass(frozen=True)
class CycleContext:
    """What every record of this cycle shares."""

    station: str
    recipe: str
    config_hash: str
    roi: Roi | None = None


@dataclass
class InspectionOutcome:
    """Everything one pass of the cycle produced; what the store records."""

    context: PartContext
    cycle: CycleContext
    started_at: float
    frame: Frame | None = None
    fault: dict[str, str] | None = None
    spec_checks: list[dict[str, Any]] = field(default_factory=list)
    spec_passed: bool = False
    alignment: np.ndarray | None = None  # frame -> reference affine from registration
    calibration_version: str | None = None
    detection: DetectionResult | None = None
    decision: Decision = Decision.CHECK_CAPTURE
    reason: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    inspection_id: str | None = None
    trigger_mode: str = TriggerMode.SOFTWARE.value

    def to_json(self) -> dict[str, Any]:
        """The one-line summary the CLI prints and listeners receive."""
        det = self.detection.to_json() if self.detection is not None else None
        return {
            "id": self.inspection_id,
            "part_id": self.context.part_id,
            "lot": self.context.lot,
            "recipe": self.context.recipe or self.cycle.recipe,
            "station": self.cycle.station,
            "decision": self.decision.value,
            "verdict": self.decision.verdict,
            "reason": self.reason,
            "fault": self.fault,
            "spec_passed": self.spec_passed,
            "spec_checks": self.spec_checks,
            "calibration_version": self.calibration_version,
            "detection": det,
            "camera": None if self.frame is None else {
                "serial": self.frame.camera_serial,
                "pixel_format": self.frame.pixel_format,
                "exposure_us": self.frame.exposure_us,
                "gain_db": self.frame.gain_db,
                "trigger_id": self.frame.trigger_id,
                "trigger_mode": self.trigger_mode,
            },
            "timings_ms": self.timings_ms,
        }


StateListener = Callable[[CycleState, CycleState], None]
InspectionListener = Callable[[InspectionOutcome], None]


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 3)


class InspectionCycle:
    """Runs inspections one trigger at a time. Thread-safe commands, one running loop."""

    def __init__(
        self,
        camera: CameraDriver,
        checker: SpecChecker,
        detector: Detector,
        store: InspectionStore,
        policy: DecisionPolicy,
        context: CycleContext,
        *,
        trigger_mode: TriggerMode = TriggerMode.SOFTWARE,
        capture_timeout_s: float = 1.0,
        reconnect_attempts: int = 1,
        shadow: Detector | None = None,
        shadow_timeout_s: float = 0.5,
        shadow_every: int = 1,
    ) -> None:
        self.camera = camera
        self.checker = checker
        self.detector = detector
        self.store = store
        self.policy = policy
        self.context = context
        self.trigger_mode = trigger_mode
        self.capture_timeout_s = capture_timeout_s
        self.reconnect_attempts = reconnect_attempts
        self._state = CycleState.IDLE
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._resume = threading.Event()  # set while nothing suspends the cycle (or to wake a stop)
        self._resume.set()
        self._suspensions: dict[str, str] = {}
        self.fault_reason: str | None = None
        self._state_listeners: list[StateListener] = []
        self._inspection_listeners: list[InspectionListener] = []
        self.shadow = ShadowRunner(shadow, shadow_timeout_s, shadow_every) if shadow is not None else None
        # What a watched folder delivered while the cycle waited ARMED (a frame, or the
        # capture error of a file that arrived unusable); inspected by the next cycle pass.
        self._arrived: Frame | Exception | None = None
        # A driver waiting for a part (a watched folder) must take nothing once suspended or
        # stopped: the wait is cut short and the run loop looks at why.
        camera.hold_when(lambda: bool(self._suspensions) or self._stop.is_set())

    # --- listeners ----------------------------------------------------------------------
    def add_state_listener(self, fn: StateListener) -> None:
        self._state_listeners.append(fn)

    def remove_state_listener(self, fn: StateListener) -> None:
        self._state_listeners.remove(fn)

    def add_inspection_listener(self, fn: InspectionListener) -> None:
        self._inspection_listeners.append(fn)

    def remove_inspection_listener(self, fn: InspectionListener) -> None:
        self._inspection_listeners.remove(fn)

    # --- state ------------------------------------------------------------------------
    @property
    def state(self) -> CycleState:
        return self._state

    @property
    def suspensions(self) -> dict[str, str]:
        """Why the cycle is held, by source (``"interlock"``, ``"disk"``, ``"operator"``):
        a copy, ``{}`` when nothing holds it. The operator screen shows these reasons."""
        with self._lock:
            return dict(self._suspensions)

    @property
    def suspend_reason(self) -> str | None:
        """All active suspension reasons in one line (None when not suspended)."""
        with self._lock:
            return "; ".join(self._suspensions.values()) or None

    def _change(self, new: CycleState) -> tuple[CycleState, CycleState] | None:
        """Switch state (caller holds the lock); return the change to announce, if any."""
        old = self._state
        if old == new:
            return None
        check_transition(old, new)
        self._state = new
        return old, new

    def _announce(self, change: tuple[CycleState, CycleState] | None) -> None:
        # Listeners run outside the lock: a listener that takes its own lock and, from
        # another thread, calls suspend() (the disk guard does) must not deadlock with us.
        if change is None:
            return
        for fn in list(self._state_listeners):
            try:
                fn(*change)
            except Exception:  # a broken listener must never stop the line
                log.exception("state listener failed")

    def _set_state(self, new: CycleState) -> None:
        with self._lock:
            change = self._change(new)
        self._announce(change)

    # --- commands -----------------------------------------------------------------------
    def arm(self) -> None:
        """Configure the trigger and start acquisition; from idle or after a fault."""
        with self._lock:
            if self._state not in (CycleState.IDLE, CycleState.FAULTED):
                raise RuntimeError(f"arm() needs idle or faulted, not {self._state.value}")
            self._stop.clear()
            self._abort.clear()
            self._sync_resume()  # suspensions survive arm(): an open door stays an open door
        self.camera.arm(self.trigger_mode)
        self.fault_reason = None
        self._set_state(CycleState.ARMED)
        change = None
        with self._lock:
            if self._suspensions and self._state == CycleState.ARMED:
                change = self._change(CycleState.SUSPENDED)
        self._announce(change)

    def disarm(self) -> None:
        if self._state in (CycleState.ARMED, CycleState.SUSPENDED, CycleState.FAULTED):
            try:
                self.camera.disarm()
            finally:
                self._set_state(CycleState.IDLE)

    def stop(self) -> None:
        """Finish the inspection in progress, then go idle."""
        self._stop.set()
        self._resume.set()

    def abort(self) -> None:
        """Give up the inspection in progress at the next stage boundary, then go idle."""
        self._abort.set()
        self._stop.set()
        self._resume.set()

    def _sync_resume(self) -> None:
        """The resume event follows the suspensions (caller holds the lock)."""
        if self._suspensions:
            self._resume.clear()
        else:
            self._resume.set()

    def suspend(self, reason: str, source: str = "operator") -> None:
        """Hold the cycle after the inspection in progress until ``resume(source)``.

        Each source (interlock, disk, operator) holds its own suspension; the cycle runs
        again only when none is left. Suspending again from the same source updates the reason.
        """
        change = None
        with self._lock:  # atomic with the run loop's "begin": no capture starts after this
            self._suspensions[source] = reason
            self._sync_resume()
            if self._state == CycleState.ARMED:
                change = self._change(CycleState.SUSPENDED)
        self._announce(change)

    def resume(self, source: str = "operator") -> None:
        """Clear ``source``'s suspension; the cycle continues once no other source holds it."""
        change = None
        with self._lock:
            self._suspensions.pop(source, None)
            self._sync_resume()
            if self._state == CycleState.SUSPENDED and not self._suspensions:
                change = self._change(CycleState.ARMED)
        self._announce(change)

    def switch_recipe(self, checker: SpecChecker, policy: DecisionPolicy, context: CycleContext) -> None:
        """Inspect the next part with another recipe's spec, decision policy and ROI.

        Atomic with the claim of a trigger: raises :class:`CycleBusy` while an inspection
        runs, so every part is inspected and recorded under exactly one recipe.
        """
        with self._lock:
            if self._state not in (CycleState.IDLE, CycleState.ARMED, CycleState.SUSPENDED, CycleState.FAULTED):
                raise CycleBusy(f"an inspection is running ({self._state.value}); switch after it")
            self.checker, self.policy, self.context = checker, policy, context

    # --- running ------------------------------------------------------------------------
    def run(self, contexts: Iterable[PartContext], count: int | None = None) -> Iterator[InspectionOutcome]:
        """Inspect one part per context until ``count``, the contexts end, stop or abort."""
        done = 0
        for ctx in contexts:
            if count is not None and done >= count:
                break
            if self._state == CycleState.FAULTED:
                break
            outcome = self._next_outcome(ctx)
            if outcome is None:
                break  # stopped or aborted while waiting, or the source ran out
            yield outcome
            done += 1
            if self._stop.is_set():
                break
        if self._stop.is_set() and self._state in (CycleState.ARMED, CycleState.SUSPENDED):
            self.disarm()

    def _next_outcome(self, ctx: PartContext) -> InspectionOutcome | None:
        while True:  # wait out an interlock (and a watched folder's quiet), then claim the trigger
            if not self._wait_while_suspended():
                break
            if not self._part_arrived():
                continue
            if self._begin():
                break
        if self._state != CycleState.CAPTURING:
            return None  # stopped or aborted while waiting
        try:
            return self._inspect_begun(ctx)
        except SourceExhausted:
            return None

    def _part_arrived(self) -> bool:
        """Has a part arrived? Always, for a triggered camera (the grab waits for it inside
        CAPTURING). A watched folder is waited on here, while the cycle stays ARMED: a quiet
        folder is no part, so a timeout announces nothing (no capturing/armed flicker every
        ``capture_timeout_s``) and records nothing; the wait ends early on suspend or stop.
        Whatever arrived is kept until the cycle begins it, even if an interlock closes in
        between (the file is claimed already; it is inspected after the resume). The claim and
        decode happen in this wait, so such a part's ``capture`` time is only its hand-over.
        """
        if self.trigger_mode is not TriggerMode.WATCHED_FOLDER or self._arrived is not None:
            return True
        try:
            self._arrived = self.camera.grab(self.capture_timeout_s)
        except CaptureTimeout:
            return False  # nothing landed, or held / stopped: the loop decides
        except Exception as exc:  # an unusable file, a lost folder: recorded as its capture fault
            self._arrived = exc
        return True

    def _wait_while_suspended(self) -> bool:
        while not self._resume.wait(0.05):
            change = None
            with self._lock:
                if self._state == CycleState.ARMED and self._suspensions:
                    change = self._change(CycleState.SUSPENDED)
            self._announce(change)
        change = None
        with self._lock:
            if self._state == CycleState.SUSPENDED and not self._suspensions:
                change = self._change(CycleState.ARMED)
        self._announce(change)
        return not self._stop.is_set()

    def _begin(self) -> bool:
        """Move ARMED -> CAPTURING unless an interlock got there first (then: wait again)."""
        with self._lock:
            if self._state != CycleState.ARMED:
                if self._state == CycleState.SUSPENDED:
                    return False
                raise RuntimeError(f"inspect() needs the cycle armed, it is {self._state.value}")
            began = not self._suspensions  # not the event: stop() sets it to wake a waiting loop
            change = self._change(CycleState.CAPTURING if began else CycleState.SUSPENDED)
        self._announce(change)
        return began

    def inspect(self, part: PartContext) -> InspectionOutcome:
        """One full cycle for one triggered part. Capture problems are recorded, not raised.

        Raises when the record itself cannot be written (the store's error), after moving
        to FAULTED: the line must not run parts that leave no record. Raises
        :class:`SourceExhausted` (and goes idle) when a finite source has run out.
        """
        if not self._begin():
            raise RuntimeError(f"the cycle is suspended: {self.suspend_reason}")
        return self._inspect_begun(part)

    def _inspect_begun(self, part: PartContext) -> InspectionOutcome:
        t_start = time.perf_counter()
        if not part.recipe:  # a part source that knows no recipe: the one the cycle runs now
            part = replace(part, recipe=self.context.recipe)
        out = InspectionOutcome(context=part, cycle=self.context, started_at=time.time(),
                                trigger_mode=self.trigger_mode.value)
        try:
            if part.recipe != self.context.recipe:
                # never inspect a part with another recipe's spec and thresholds: no image is
                # taken, the record says why (a switch raced the trigger)
                out.fault = {"kind": "recipe_mismatch", "message": f"part {part.part_id} needs recipe "
                             f"{part.recipe}, the station runs {self.context.recipe}"}
            else:
                self._capture(out)
            self._check_abort()
            if out.frame is not None:
                self._set_state(CycleState.CHECKING)
                self._check(out)
                self._check_abort()
                if out.spec_passed:
                    self._set_state(CycleState.DETECTING)
                    self._detect(out)
                    self._check_abort()
            out.decision, out.reason = self._decide(out)
        except CycleAborted:
            out.fault = {"kind": "aborted", "message": "inspection aborted by the operator"}
            out.decision, out.reason = Decision.CHECK_CAPTURE, "aborted"
        self._record(out, t_start)
        self._notify(out)
        self._after_inspection()
        return out

    # --- stages -------------------------------------------------------------------------
    def _check_abort(self) -> None:
        if self._abort.is_set():
            raise CycleAborted()

    def _grab(self) -> Frame:
        """The frame a watched folder already delivered (or its error), else a fresh grab."""
        arrived, self._arrived = self._arrived, None
        if isinstance(arrived, Exception):
            raise arrived
        return arrived if arrived is not None else self.camera.grab(self.capture_timeout_s)

    def _capture(self, out: InspectionOutcome) -> None:
        t0 = time.perf_counter()
        try:
            frame = self._grab()
            out.frame = frame.with_context(out.context)
        except CaptureTimeout as exc:
            out.fault = {"kind": exc.kind, "message": str(exc)}
        except NoMoreFrames as exc:
            self.camera.disarm()
            self._set_state(CycleState.IDLE)
            raise SourceExhausted(str(exc)) from exc
        except CameraDisconnected as exc:
            out.fault = {"kind": exc.kind, "message": str(exc)}
            self._reconnect()
        except CaptureError as exc:
            out.fault = {"kind": exc.kind, "message": str(exc)}
        except Exception as exc:  # a driver bug must not leave the cycle stuck in CAPTURING
            log.exception("camera driver failed")
            out.fault = {"kind": "driver_error", "message": f"{type(exc).__name__}: {exc}"}
        finally:
            out.timings_ms["capture"] = _ms(t0)

    def _reconnect(self) -> None:
        """Try to get a lost camera back; leave the cycle FAULTED if it stays away."""
        for attempt in range(1, self.reconnect_attempts + 1):
            try:
                self.camera.close()
                self.camera.open()
                self.camera.arm(self.trigger_mode)
                log.warning("camera reconnected after %d attempt(s)", attempt)
                return
            except CaptureError as exc:
                log.error("reconnect attempt %d failed: %s", attempt, exc)
        self.fault_reason = "camera disconnected and could not be reconnected"

    def _check(self, out: InspectionOutcome) -> None:
        t0 = time.perf_counter()
        try:
            report = self.checker.check(out.frame)
        except ValueError as exc:  # wrong size / bit depth for this spec: a capture fault
            out.fault = {"kind": BadImage.kind, "message": str(exc)}
            out.spec_passed = False
            report = None
        else:
            out.spec_checks = report.to_json()
            out.spec_passed = bool(report.passed)
            out.alignment = report.alignment
        out.calibration_version = self.checker.version
        out.timings_ms["checks"] = _ms(t0)

    def _detect(self, out: InspectionOutcome) -> None:
        t0 = time.perf_counter()
        pending = self.shadow.start(out.frame.image, self.context.roi, out.alignment) if self.shadow else None
        out.detection = self.detector.detect(
            out.frame.image, roi=self.context.roi, alignment=out.alignment)
        if self.shadow is not None:
            # Recorded beside the active result, never acted on (the decision reads only
            # the active model's fields).
            out.detection.extra["shadow"] = self.shadow.finish(pending, out.detection)
        out.timings_ms["detect"] = _ms(t0)

    def _decide(self, out: InspectionOutcome) -> tuple[Decision, str]:
        if out.fault is not None:
            return Decision.CHECK_CAPTURE, f"capture fault: {out.fault['kind']}"
        decision, reason = self.policy.decide(out.spec_passed, out.detection)
        if decision is Decision.CHECK_CAPTURE and out.spec_checks:
            failed = [c["name"] for c in out.spec_checks if not c.get("passed", True)]
            reason = "capture outside its spec: " + ", ".join(failed)
        return decision, reason

    def _record(self, out: InspectionOutcome, t_start: float) -> None:
        self._set_state(CycleState.RECORDING)
        t0 = time.perf_counter()
        try:
            out.inspection_id = self.store.record(out)
        except Exception as exc:
            self.fault_reason = f"cannot record inspection: {exc}"
            self._set_state(CycleState.FAULTED)
            raise
        out.timings_ms["record"] = _ms(t0)
        out.timings_ms["total"] = _ms(t_start)
        for stage in ("capture", "checks", "detect", "record"):
            out.timings_ms.setdefault(stage, 0.0)

    def _notify(self, out: InspectionOutcome) -> None:
        for fn in list(self._inspection_listeners):
            try:
                fn(out)
            except Exception:
                log.exception("inspection listener failed")

    def _after_inspection(self) -> None:
        if self.fault_reason is not None:
            self._set_state(CycleState.FAULTED)
        elif self._abort.is_set():
            self.camera.disarm()
            self._set_state(CycleState.IDLE)
        elif self._suspensions:
            self._set_state(CycleState.SUSPENDED)
        else:
            self._set_state(CycleState.ARMED)
