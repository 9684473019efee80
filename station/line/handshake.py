"""The line handshake without a transport: trigger -> inspect -> result -> acknowledge.

Modbus (:mod:`station.line.modbus_server`) and OPC UA (:mod:`station.line.opcua_server`)
are thin adapters over this one state machine, so both speak the same protocol:

1. ``trigger_ready`` is 1: armed, nothing suspends the cycle, no inspection running, the
   last result acknowledged.
2. The PLC raises ``trigger`` (part id, lot, recipe number in their registers): the
   station drops ``trigger_ready``, sets ``busy`` and inspects the part on its own thread.
3. The station writes ``result_code`` (verdict or error code) and sets ``result_ready``.
4. The PLC raises ``acknowledge``: ``result_ready`` drops; once the inspection has ended,
   ``trigger_ready`` comes back.

The line is never left waiting: a refused trigger (suspended, not armed, unknown recipe,
bad part data) is answered at once, and a watchdog answers ``TIMEOUT`` when no result is
there ``result_timeout_s`` after the trigger. The slow inspection still finishes, is
recorded as usual and gets a ``line.result_not_reported`` audit entry, because the PLC
acted on the timeout, not on that record.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from station.capture.base import PartContext
from station.inspect.cycle import CycleBusy, InspectionOutcome, SourceExhausted
from station.inspect.states import CycleState
from station.line.recipes import RecipeAnswer, RecipeSwitcher
from station.line.registers import STATE_CODES, ResultCode

log = logging.getLogger(__name__)
INTERLOCK_SOURCE = "interlock"  # the handshake's key in the cycle's suspensions
MAX_TEXT = 64  # longest part id / lot accepted over OPC UA (Modbus registers hold less)


@dataclass(frozen=True)
class PartRequest:
    """What the line says about the part it triggers for; ``problem`` = unreadable registers."""

    part_id: str = ""
    lot: str = ""
    recipe_number: int = 0
    problem: str = ""


@dataclass(frozen=True)
class LineResult:
    """One answer to one trigger, as the PLC and the MES see it."""

    seq: int  # the trigger it answers
    code: ResultCode
    part_id: str
    lot: str
    recipe: str
    result_id: str = ""  # the inspection id ("" when nothing was recorded)
    verdict: str = ""  # OK / NotOK / NotDecidable ("" for an error code)
    decision: str = ""
    confidence: float | None = None
    score: float | None = None
    message: str = ""
    timestamp: float = field(default_factory=time.time)
    latency_ms: float = 0.0  # trigger -> result_ready


@dataclass(frozen=True)
class LineStatus:
    """A consistent snapshot of the handshake for the transports and the operator screen."""

    cycle_state: str
    trigger_ready: bool
    result_ready: bool
    busy: bool
    suspensions: dict[str, str]
    interlock: bool
    active_recipe: str
    active_recipe_number: int
    trigger_seq: int
    result_seq: int
    recipe_seq: int
    protocol_errors: int
    late_results: int
    last_result: LineResult | None
    last_recipe: RecipeAnswer | None
    links: dict[str, str]  # transport -> "listening on ...", clients

    @property
    def state_code(self) -> int:
        return STATE_CODES.get(self.cycle_state, 0)


class LineBusy(RuntimeError):
    """A trigger came while ``trigger_ready`` was 0 (inspection running or result unread)."""


@dataclass
class Ticket:
    """One accepted trigger; ``done`` is set once its result (or error code) is published."""

    seq: int
    request: PartRequest
    started: float  # perf_counter at the trigger
    done: threading.Event = field(default_factory=threading.Event)
    result: LineResult | None = None
    timer: threading.Timer | None = None


StatusListener = Callable[[LineStatus], None]


class LineHandshake:
    """The handshake state machine over a running station (a StationRuntime)."""

    def __init__(self, runtime: Any, *, result_timeout_s: float, interlock_source: str = "modbus") -> None:
        self.runtime = runtime
        self.cycle = runtime.cycle
        self.store = runtime.store
        self.recipes = RecipeSwitcher(runtime)
        self.result_timeout_s = result_timeout_s
        self.interlock_source = interlock_source
        self.default_lot = runtime.cfg.station.lot
        self._lock = threading.RLock()
        self._interlock_lock = threading.Lock()  # one interlock write at a time, suspend/resume included
        self._t0 = time.monotonic()
        self._busy = False
        self._switching = False  # a recipe switch is in progress: no trigger may start
        self._current: Ticket | None = None  # the accepted trigger not yet finished
        self._result_ready = False
        self._interlock = False
        self._trigger_seq = self._result_seq = self._recipe_seq = 0
        self._protocol_errors = self._late = 0
        self._last_result: LineResult | None = None
        self._last_recipe: RecipeAnswer | None = None
        self._part_counters: dict[str, int] = {}
        self.links: dict[str, str] = {}
        self._listeners: list[StatusListener] = []
        self._last_notified: tuple | None = None
        self._jobs: queue.Queue[tuple[Ticket, PartContext] | None] = queue.Queue()
        self._closed = False
        self.cycle.add_state_listener(self._on_cycle_state)
        self._worker = threading.Thread(target=self._work_loop, name="line-handshake", daemon=True)
        self._worker.start()

    # --- what the transports and the screen read ----------------------------------------------
    @property
    def heartbeat(self) -> int:
        """Seconds since the handshake started, wrapping at 65536 (a PLC watchdog input)."""
        return int(time.monotonic() - self._t0) & 0xFFFF

    def status(self) -> LineStatus:
        with self._lock:
            suspensions = self.cycle.suspensions
            state = self.cycle.state
            ready = (not self._busy and not self._switching and not self._result_ready and not self._closed
                     and state is CycleState.ARMED and not suspensions)
            return LineStatus(
                cycle_state=state.value, trigger_ready=ready, result_ready=self._result_ready, busy=self._busy,
                suspensions=suspensions, interlock=INTERLOCK_SOURCE in suspensions,
                active_recipe=self.recipes.active, active_recipe_number=self.recipes.active_number,
                trigger_seq=self._trigger_seq, result_seq=self._result_seq, recipe_seq=self._recipe_seq,
                protocol_errors=self._protocol_errors, late_results=self._late,
                last_result=self._last_result, last_recipe=self._last_recipe, links=dict(self.links))

    def add_listener(self, fn: StatusListener) -> None:
        """``fn(status)`` after every change (called on the thread that made the change)."""
        self._listeners.append(fn)

    def remove_listener(self, fn: StatusListener) -> None:
        self._listeners.remove(fn)

    def set_link(self, name: str, text: str) -> None:
        """A transport reports its connection state (shown on the operator screen)."""
        with self._lock:
            self.links[name] = text
        self._notify()

    # --- commands ---------------------------------------------------------------------------
    def trigger(self, request: PartRequest, source: str) -> Ticket:
        """Start one inspection; the ticket's ``done`` is set within ``result_timeout_s``.

        Raises :class:`LineBusy` when ``trigger_ready`` is 0 because an inspection runs or
        the last result is unacknowledged (the PLC broke the handshake; counted, ignored).
        """
        started = time.perf_counter()
        with self._lock:
            if self._busy or self._result_ready:
                self._protocol_errors += 1
                raise LineBusy("trigger ignored: an inspection is running or its result is not acknowledged")
            self._trigger_seq += 1
            ticket = Ticket(self._trigger_seq, request, started)
            self._busy = True
            self._current = ticket
            refusal = self._refusal(request)
            if refusal is None:
                try:
                    ctx = self._part_context(request)
                except Exception as exc:  # the part counter could not be read: answer, never hang
                    refusal = ResultCode.STATION_ERROR, f"cannot number the part: {exc}"
                else:
                    ticket.timer = threading.Timer(self.result_timeout_s, self._on_timeout, (ticket,))
                    ticket.timer.daemon = True
        log.debug("trigger %d from %s: %s", ticket.seq, source, request)
        if refusal is not None:
            self._publish(ticket, self._error(ticket, *refusal))
            self._end(ticket)
        else:
            ticket.timer.start()
            self._jobs.put((ticket, ctx))
            self._notify()
        return ticket

    def acknowledge(self, source: str = "") -> bool:
        """The PLC read the result: drop ``result_ready``. False when there was none."""
        with self._lock:
            if not self._result_ready:
                return False
            self._result_ready = False
        self._notify()
        return True

    def select_recipe(self, key: int | str, who: str) -> RecipeAnswer:
        """Switch the active recipe for the next part (refused while an inspection runs)."""
        with self._lock:  # busy or switching: a trigger cannot start in between (it is refused)
            busy = self._busy or self._switching
            self._switching = self._switching or not busy
        if busy:
            answer = RecipeAnswer(ResultCode.NOT_READY, self.recipes.active, self.recipes.active_number,
                                  "an inspection or a recipe switch is running; select the recipe after it")
            self.store.audit("recipe.refused", subject=str(key), actor=who,
                             payload={"requested": key, "code": int(answer.code), "message": answer.message})
        else:
            self._notify()  # trigger_ready drops for the switch
            try:
                answer = self.recipes.select(key, who)
            finally:
                with self._lock:
                    self._switching = False
        with self._lock:
            self._recipe_seq = (self._recipe_seq + 1) & 0xFFFF
            self._last_recipe = answer
        self._notify()
        return answer

    def set_interlock(self, active: bool, source: str, who: str | None = None) -> bool:
        """Door open / shutter closed (``active``) suspends the cycle; clearing resumes it.

        Only ``interlock_source`` (or any, when configured so) may set it; returns False
        for a write from another transport, which is ignored. ``who`` is the audit actor
        when the transport proved one (an OPC UA user or certificate), else ``plc:<source>``.
        """
        if self.interlock_source not in ("any", source):
            log.warning("interlock write from %s ignored (line.interlock_source is %s)", source, self.interlock_source)
            return False
        with self._interlock_lock:  # else a late suspend can land after a newer write's resume
            with self._lock:
                changed = active != self._interlock
                self._interlock = active
            if not changed:
                return True
            if active:
                self.cycle.suspend(f"interlock open (door / shutter, from {source})", source=INTERLOCK_SOURCE)
            else:
                self.cycle.resume(source=INTERLOCK_SOURCE)
            try:
                self.store.audit("line.interlock", subject="open" if active else "closed", actor=who or f"plc:{source}",
                                 payload={"active": active})
            except Exception:
                log.exception("could not audit the interlock change")
            self._notify()
            return True

    def wait(self, ticket: Ticket, timeout_s: float | None = None) -> LineResult | None:
        """Block until the ticket's result is published (at most ``result_timeout_s`` + margin)."""
        ticket.done.wait(self.result_timeout_s + 1.0 if timeout_s is None else timeout_s)
        return ticket.result

    def close(self) -> None:
        """Refuse new triggers, answer the one in progress (NOT_READY; its record is still
        written), so no PLC or MES caller waits on a closing station; then stop the worker."""
        with self._lock:
            self._closed = True
            waiting = self._current
        if waiting is not None:
            self._publish(waiting, self._error(waiting, ResultCode.NOT_READY,
                                               "the station is closing; the inspection is recorded, not reported"))
        self._jobs.put(None)
        self._worker.join(timeout=30)
        try:
            self.cycle.remove_state_listener(self._on_cycle_state)
        except ValueError:
            pass

    # --- internals --------------------------------------------------------------------------
    def _refusal(self, request: PartRequest) -> tuple[ResultCode, str] | None:
        """Why this trigger cannot be inspected now (caller holds the lock), or None."""
        if request.problem:
            return ResultCode.BAD_PART_DATA, request.problem
        for name, text in (("part id", request.part_id), ("lot", request.lot)):
            if len(text) > MAX_TEXT or any(not (" " <= ch <= "~") for ch in text):
                return ResultCode.BAD_PART_DATA, f"{name} {text[:80]!r} is not printable ASCII of at most {MAX_TEXT}"
        if self._closed:
            return ResultCode.NOT_READY, "the line handshake is shutting down"
        if self._switching:
            return ResultCode.NOT_READY, "a recipe switch is in progress; trigger after it"
        suspensions = self.cycle.suspensions
        if suspensions:
            return ResultCode.SUSPENDED, "; ".join(suspensions.values())
        if self.cycle.state is not CycleState.ARMED:
            return ResultCode.NOT_READY, f"the station is {self.cycle.state.value}, not armed"
        wanted = request.recipe_number
        if wanted and wanted != self.recipes.active_number:
            if self.recipes.find(wanted) is None:
                return ResultCode.UNKNOWN_RECIPE, f"unknown recipe number {wanted}"
            return ResultCode.RECIPE_MISMATCH, (f"the part needs recipe {wanted}, the active one is "
                                                f"{self.recipes.active_number} ({self.recipes.active})")
        return None

    def _part_context(self, request: PartRequest) -> PartContext:
        lot = request.lot or self.default_lot
        part_id = request.part_id
        if not part_id:  # a line without part tracking: number the parts like the software trigger does
            prefix = f"{lot}-"
            n = self._part_counters.get(prefix)
            if n is None:
                n = self.store.part_counter(prefix)
            self._part_counters[prefix] = n + 1
            part_id = f"{prefix}{n + 1:06d}"
        return PartContext(part_id=part_id, lot=lot, recipe=self.recipes.active)

    def _error(self, ticket: Ticket, code: ResultCode, message: str) -> LineResult:
        req = ticket.request
        return LineResult(ticket.seq, code, req.part_id, req.lot or self.default_lot, self.recipes.active,
                          message=message)

    def _on_timeout(self, ticket: Ticket) -> None:
        limit = self.result_timeout_s * 1000
        if self._publish(ticket, self._error(ticket, ResultCode.TIMEOUT, f"no result within {limit:.0f} ms")):
            log.warning("trigger %d: no result within %.0f ms; answered TIMEOUT", ticket.seq, limit)

    def _finish(self, ticket: Ticket, result: LineResult) -> bool:
        """The inspection's own answer: the station is free again *before* the answer is out,
        so a PLC/MES that triggers right after reading it is not refused as busy."""
        return self._publish(ticket, result, finished=True)

    def _publish(self, ticket: Ticket, result: LineResult, finished: bool = False) -> bool:
        """Write the ticket's answer once; False when it was already answered (a timeout):
        then the station stays busy until the late result is audited (``_end`` frees it), so
        a PLC that sees trigger_ready again also finds ``line.result_not_reported``."""
        with self._lock:
            if ticket.done.is_set():
                return False
            if finished and self._current is ticket:
                self._busy = False
                self._current = None
            if ticket.timer is not None:
                ticket.timer.cancel()
            latency = (time.perf_counter() - ticket.started) * 1000.0
            result = replace(result, latency_ms=round(latency, 3))
            ticket.result = result
            self._last_result = result
            self._result_ready = True
            self._result_seq = (self._result_seq + 1) & 0xFFFF
            ticket.done.set()
        self._notify()
        return True

    def _end(self, ticket: Ticket) -> None:
        with self._lock:
            if self._current is ticket:  # not yet ended by its result (_publish finished=True)
                self._busy = False
                self._current = None
        self._notify()

    def _work_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            ticket, ctx = job
            try:
                self._inspect(ticket, ctx)
            finally:
                self._end(ticket)

    def _inspect(self, ticket: Ticket, ctx: PartContext) -> None:
        try:
            out = self.cycle.inspect(ctx)
        except SourceExhausted as exc:
            self._finish(ticket, self._error(ticket, ResultCode.CAPTURE_FAULT, f"camera source exhausted: {exc}"))
            return
        except CycleBusy as exc:
            self._finish(ticket, self._error(ticket, ResultCode.NOT_READY, str(exc)))
            return
        except RuntimeError as exc:  # suspended or disarmed between the trigger and its claim
            code = ResultCode.SUSPENDED if self.cycle.suspensions else ResultCode.NOT_READY
            self._finish(ticket, self._error(ticket, code, str(exc)))
            return
        except Exception as exc:  # the record could not be written: the cycle is FAULTED
            log.exception("inspection for trigger %d failed", ticket.seq)
            self._finish(ticket, self._error(ticket, ResultCode.STATION_ERROR, str(exc)))
            return
        if not self._finish(ticket, self._from_outcome(ticket, out)):
            self._report_late(ticket, out)

    def _from_outcome(self, ticket: Ticket, out: InspectionOutcome) -> LineResult:
        det = out.detection
        if out.fault is not None and out.fault.get("kind") != "aborted":
            code = ResultCode.CAPTURE_FAULT
        else:
            code = ResultCode.for_verdict(out.decision.verdict)
        return LineResult(
            ticket.seq, code, out.context.part_id, out.context.lot, out.context.recipe or out.cycle.recipe,
            result_id=out.inspection_id or "", verdict=out.decision.verdict, decision=out.decision.value,
            confidence=None if det is None else float(det.confidence),
            score=None if det is None else float(det.score), message=out.reason)

    def _report_late(self, ticket: Ticket, out: InspectionOutcome) -> None:
        with self._lock:
            self._late += 1
        elapsed = (time.perf_counter() - ticket.started) * 1000.0
        log.warning("inspection %s finished after the timeout (%.0f ms): recorded, not reported",
                    out.inspection_id, elapsed)
        try:
            self.store.audit("line.result_not_reported", subject=out.inspection_id or "", actor="station:line",
                             payload={"part_id": out.context.part_id, "decision": out.decision.value,
                                      "reported_code": int(ResultCode.TIMEOUT), "elapsed_ms": round(elapsed, 1),
                                      "timeout_ms": round(self.result_timeout_s * 1000)})
        except Exception:
            log.exception("could not audit the late result of %s", out.inspection_id)
        self._notify()

    def _on_cycle_state(self, _old: CycleState, _new: CycleState) -> None:
        self._notify()

    def _notify(self) -> None:
        if not self._listeners:
            return
        status = self.status()
        key = (status.cycle_state, status.trigger_ready, status.result_ready, status.busy,
               tuple(status.suspensions.items()), status.active_recipe, status.result_seq, status.recipe_seq,
               status.protocol_errors, status.late_results, tuple(status.links.items()))
        with self._lock:
            if key == self._last_notified:
                return
            self._last_notified = key
        for fn in list(self._listeners):
            try:
                fn(status)
            except Exception:  # a broken listener (a screen) must never stop the line
                log.exception("line status listener failed")

