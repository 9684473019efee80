"""What every screen receives in its constructor: :class:`UiContext` (inject, no singletons).

A page factory is called as ``factory(ctx) -> QWidget``. Through the context a page reaches

- ``ctx.runtime``: the :class:`~station.runtime.StationRuntime` (``.store``, ``.camera``,
  ``.cycle``, ``.detector``, ``.checker``, ``.cfg``, ``.data_dir``);
- ``ctx.session``: the signed-in :class:`~station.users.Session` (``ctx.can(perm)``);
- ``ctx.tasks``: the :class:`~station.ui.tasks.TaskRunner` for anything slower than a few
  milliseconds (database writes with ``write=True``);
- ``ctx.notifier``: the one path for errors and alarms;
- ``ctx.line``: the :class:`~station.ui.line_runner.LineRunner` (start / stop / trigger,
  the latest result);
- ``ctx.events``: Qt signals re-emitted on the GUI thread (``inspected``, ``cycle_state``,
  ``line_error``, ``session_changed``).

Actions a role may not do go through :meth:`UiContext.require`, which refuses, audits the
refusal and tells the person why.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, Signal

from station.config import UiConfig
from station.runtime import StationRuntime
from station.ui.line_runner import LineRunner
from station.ui.notify import Notifier
from station.ui.tasks import TaskRunner
from station.users import PermissionDenied, Session, UserDirectory


class UiEvents(QObject):
    """Signals the core's callbacks are re-emitted on (queued onto the GUI thread)."""

    inspected = Signal(object)  # ShownResult, after the record committed
    cycle_state = Signal(str, str)  # old, new CycleState values
    line_error = Signal(object)  # exception that stopped the line
    session_changed = Signal(object)  # Session or None


@dataclass
class UiContext:
    runtime: StationRuntime
    users: UserDirectory
    tasks: TaskRunner
    notifier: Notifier
    line: LineRunner
    events: UiEvents
    session: Session | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # room for part B without a new field

    @property
    def ui_cfg(self) -> UiConfig:
        return self.runtime.cfg.ui

    @property
    def store(self):
        return self.runtime.store

    def can(self, permission: str) -> bool:
        return self.session is not None and self.session.can(permission)

    def require(self, permission: str, what: str) -> Session:
        """The session if it may ``permission``; else audit, notify and raise PermissionDenied."""
        if self.can(permission):
            return self.session  # type: ignore[return-value]
        role = self.session.role if self.session else "nobody signed in"
        try:
            self.users.record_refusal(self.session, permission, what)
        finally:
            self.notifier.warning(f"Not allowed for {role}: {what}")
        raise PermissionDenied(f"{role} may not {what}")

    def audit(self, action: str, subject: str = "", payload: Any = None) -> None:
        """Audit an action of the signed-in person (runs on the write queue)."""
        actor = self.session.username if self.session else None
        store = self.runtime.store
        self.tasks.run(lambda _c: store.audit(action, subject, payload, actor=actor),
                       label=f"audit {action}", write=True)

    def close(self) -> None:
        """Stop the line thread and background work; detach from the cycle (idempotent)."""
        relay = self.extras.pop("_state_relay", None)
        self.line.close()
        if relay is not None:
            try:
                self.runtime.cycle.remove_state_listener(relay)
            except ValueError:
                pass
        self.tasks.shutdown()
