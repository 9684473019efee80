"""The station's health on every screen (status bar) and as a page.

Camera connected, model loaded (id and version), disk space, and whether the sync service
is alive (its ``sink_status`` rows were updated recently). Read every few seconds on the
task runner; each item is a word plus a coloured dot, so colour is not the only cue.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from station.ui.context import UiContext
from station.ui.station_status import Health, human_age, read_health
from station.ui.theme import MUTED, STATE_BAD, STATE_OK, STATE_WARN

REFRESH_MS = 2000


def health_items(h: Health) -> list[tuple[str, str, str]]:
    """(key, text, colour) for each health item: what the bar and the page show."""
    sync = h.sync
    if not sync.configured:
        sync_txt, sync_col = "sync: not configured (queued locally)", STATE_WARN
    elif sync.service_alive:
        sync_txt, sync_col = f"sync service alive ({sync.headline})", STATE_OK if sync.headline == "online" else STATE_WARN
    else:
        sync_txt, sync_col = "sync service NOT responding", STATE_BAD
    return [
        ("camera", f"camera {h.camera_serial} {'connected' if h.camera_connected else 'DISCONNECTED'}",
         STATE_OK if h.camera_connected else STATE_BAD),
        ("model", f"model {h.model_id} v{h.model_version}" if h.model_loaded else "NO MODEL loaded",
         STATE_OK if h.model_loaded else STATE_BAD),
        ("disk", f"disk {h.disk_free_gb:.1f} GB free" + (" - LOW" if h.disk_low else ""),
         STATE_BAD if h.disk_low else STATE_OK),
        ("sync", sync_txt, sync_col),
        ("cycle", f"line {h.cycle_state}" + (f": {h.fault_reason}" if h.fault_reason else ""),
         STATE_BAD if h.cycle_state == "faulted" else STATE_WARN if h.cycle_state == "suspended" else STATE_OK),
    ]


def _dot(colour: str) -> str:
    return f"<span style='color:{colour}; font-size:22px'>&#9679;</span>"


class _HealthPoller:
    """Shared by bar and page: poll read_health on the task runner while alive."""

    def _init_poll(self, ctx: UiContext, owner: QWidget) -> None:
        self.ctx = ctx
        self.last: Health | None = None
        self._last_fault: str | None = None
        self._busy = False
        self._timer = QTimer(owner)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        ctx.events.inspected.connect(self._on_inspected)
        self.refresh()

    def _on_inspected(self, item) -> None:
        fault = item.outcome.fault
        self._last_fault = fault["kind"] if fault else None

    def refresh(self) -> None:
        if self._busy:
            return
        self._busy = True
        cfg = self.ctx.ui_cfg
        rt, fault = self.ctx.runtime, self._last_fault

        def done(h: Health) -> None:
            self._busy = False
            self.last = h
            self.show_health(h)

        def failed(exc: BaseException) -> None:
            self._busy = False

        self.ctx.tasks.run(lambda _c: read_health(rt, stale_s=cfg.sync_stale_s, disk_warn_gb=cfg.disk_warn_gb,
                                                  last_fault_kind=fault),
                           done, failed, label="health")

    def close_page(self) -> None:
        self._timer.stop()
        try:
            self.ctx.events.inspected.disconnect(self._on_inspected)
        except (RuntimeError, TypeError):
            pass


class QtHealthBar(QWidget, _HealthPoller):
    """One line of health items for the status bar."""

    def __init__(self, ctx: UiContext) -> None:
        QWidget.__init__(self)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 0, 8, 0)
        self.labels: dict[str, QLabel] = {}
        for key in ("camera", "model", "disk", "sync", "cycle"):
            label = QLabel("")
            label.setTextFormat(Qt.TextFormat.RichText)
            self.labels[key] = label
            lay.addWidget(label)
            lay.addSpacing(18)
        lay.addStretch(1)
        self._init_poll(ctx, self)

    def show_health(self, h: Health) -> None:
        for key, text, colour in health_items(h):
            self.labels[key].setText(f"{_dot(colour)} {text}")


class QtHealthPage(QWidget, _HealthPoller):
    """The health page: the same items, large, plus each sink's last word."""

    def __init__(self, ctx: UiContext) -> None:
        QWidget.__init__(self)
        root = QVBoxLayout(self)
        root.setContentsMargins(32, 24, 32, 24)
        panel = QFrame()
        panel.setObjectName("panel")
        self.grid = QGridLayout(panel)
        self.grid.setContentsMargins(24, 24, 24, 24)
        self.grid.setVerticalSpacing(18)
        self.labels: dict[str, QLabel] = {}
        for row, key in enumerate(("camera", "model", "disk", "sync", "cycle")):
            title = QLabel(key.upper())
            title.setStyleSheet(f"color: {MUTED}; font-size: 22px; font-weight: bold;")
            value = QLabel("")
            value.setTextFormat(Qt.TextFormat.RichText)
            value.setStyleSheet("font-size: 30px;")
            self.grid.addWidget(title, row, 0)
            self.grid.addWidget(value, row, 1)
            self.labels[key] = value
        self.grid.setColumnMinimumWidth(0, 220)
        self.grid.setColumnStretch(1, 1)
        root.addWidget(panel)
        self.sinks = QLabel("")
        self.sinks.setWordWrap(True)
        self.sinks.setStyleSheet("font-size: 22px;")
        root.addWidget(self.sinks)
        root.addStretch(1)
        self._init_poll(ctx, self)

    def show_health(self, h: Health) -> None:
        for key, text, colour in health_items(h):
            self.labels[key].setText(f"{_dot(colour)} {text}")
        s = h.sync
        lines = [f"Records waiting for sync: {s.waiting}; oldest waiting {human_age(s.oldest_age_s)}; "
                 f"refused for good: {s.dead}"]
        for sink in s.sinks:
            err = f" - last error: {sink['last_error']}" if sink["last_error"] else ""
            lines.append(f"{sink['sink']}: {sink['state']}{err}")
        self.sinks.setText("\n".join(lines))
