"""The operator screen (the default view): what the person at the line watches all shift.

Live image with heatmap toggle on the left; on the right the verdict banner, the part,
the shift's counters and yield, the seven capture-spec checks, the line (recipe, PLC
link) and the sync state; under the image the window / level controls (16-bit frames only),
the last results, start / stop / manual trigger and the heatmap toggle. Above the image, the
LINE HELD banner while the cycle is suspended (Start is disabled then, with the reason).
Nothing on it changes a setting (window / level only changes what is shown).

Two paths feed it, neither of which can hold up the line:

- the cycle's inspection listener (line thread, after the record committed) is re-emitted
  as ``ctx.events.inspected`` and arrives queued on the GUI thread: banner, part,
  counters, spec checks, strip;
- a QTimer at ``ui.live_view_fps`` pulls the newest frame from the line's one-slot mailbox
  (``ctx.line.latest``) and paints it;
- a slower QTimer reads the cycle's suspension reasons and the line link through the
  adapters in :mod:`station.ui.line_view` (plain attribute reads).
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from station.display_window import top_of
from station.ui.context import UiContext
from station.ui.imaging import result_thumbnail
from station.ui.line_panel import QtLinePanel
from station.ui.line_runner import ShownResult
from station.ui.line_view import (
    active_recipe,
    active_suspensions,
    display_presets,
    line_links,
    line_status,
    recipe_grey_window,
    shown_window,
)
from station.ui.live_view import QtLiveView
from station.ui.operator_panels import QtCountersPanel, QtPartPanel, QtSpecPanel, QtSyncPanel
from station.ui.results_strip import QtResultsStrip
from station.ui.station_status import SyncState, read_sync_state
from station.ui.suspension_banner import HELD_WORD, QtSuspensionBanner
from station.ui.verdict_banner import QtVerdictBanner
from station.ui.window_level_widget import QtWindowLevelBar, WindowLevelMouse
from station.users import PermissionDenied

SYNC_REFRESH_MS = 3000
COUNTS_REFRESH_MS = 30_000
LINE_STATUS_MS = 250


def shift_start(now: datetime, shift_hours: float) -> datetime:
    """Shifts start at midnight (local time) and every ``shift_hours`` after it."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    n = int((now - midnight).total_seconds() // (shift_hours * 3600))
    return midnight + timedelta(hours=n * shift_hours)


class QtOperatorScreen(QWidget):
    def __init__(self, ctx: UiContext) -> None:
        super().__init__()
        self.ctx = ctx
        self._seq = 0
        self._preview_seq = 0
        self.latency_ms: list[float] = []  # verdict on screen after commit (bench/ui.py)
        self._closed = False

        self.live = QtLiveView()
        self.banner = QtVerdictBanner()
        self.part = QtPartPanel()
        self.counters = QtCountersPanel()
        self.spec = QtSpecPanel()
        self.sync = QtSyncPanel()
        self.strip = QtResultsStrip(ctx.ui_cfg.recent_results)
        self.held = QtSuspensionBanner()
        self.line_panel = QtLinePanel()
        self.window_level = QtWindowLevelBar(display_presets(ctx.runtime.cfg), lambda: self.live.frame,
                                             grey_window=recipe_grey_window(ctx.runtime.cfg))
        self.window_level.window_changed.connect(self.live.set_window)
        self._wl_mouse = WindowLevelMouse(self.live, self.window_level)

        self.start_button = QPushButton("▶  Start")
        self.start_button.setObjectName("startButton")
        self.stop_button = QPushButton("■  Stop")
        self.stop_button.setObjectName("stopButton")
        self.trigger_button = QPushButton("Inspect one part")
        self.heatmap_button = QPushButton("Heatmap")
        self.heatmap_button.setCheckable(True)
        self.line_state = QLabel("")
        self.line_state.setStyleSheet("font-size: 22px;")
        for b in (self.start_button, self.stop_button, self.trigger_button, self.heatmap_button):
            b.setMinimumHeight(64)
        self.start_button.clicked.connect(self.start_line)
        self.stop_button.clicked.connect(self.stop_line)
        self.trigger_button.clicked.connect(self.trigger_once)
        self.heatmap_button.toggled.connect(self.set_heatmap)
        self.start_button.setEnabled(ctx.can("run"))
        self.stop_button.setEnabled(ctx.can("run"))
        self.trigger_button.setEnabled(ctx.can("trigger"))

        controls = QHBoxLayout()
        for b in (self.start_button, self.stop_button, self.trigger_button):
            controls.addWidget(b)
        controls.addSpacing(16)
        controls.addWidget(self.line_state, 1)
        controls.addWidget(self.heatmap_button)

        left = QVBoxLayout()
        left.addWidget(self.held)
        left.addWidget(self.live, 1)
        left.addWidget(self.window_level)
        left.addWidget(self.strip)
        left.addLayout(controls)
        right = QVBoxLayout()
        right.setSpacing(10)
        for w in (self.banner, self.part, self.line_panel, self.counters, self.spec, self.sync):
            right.addWidget(w)
        right.addStretch(1)
        side = QWidget()
        side.setLayout(right)
        side.setFixedWidth(640)
        root = QHBoxLayout(self)
        root.setContentsMargins(12, 12, 12, 12)
        root.addLayout(left, 1)
        root.addWidget(side)

        ctx.events.inspected.connect(self.show_result)
        ctx.events.cycle_state.connect(self._on_cycle_state)
        ctx.events.line_error.connect(self._on_line_error)
        self._frame_timer = QTimer(self)
        self._frame_timer.setInterval(max(1, round(1000 / ctx.ui_cfg.live_view_fps)))
        self._frame_timer.timeout.connect(self.pull_frame)
        self._frame_timer.start()
        self._sync_timer = QTimer(self)
        self._sync_timer.setInterval(SYNC_REFRESH_MS)
        self._sync_timer.timeout.connect(self.refresh_sync)
        self._sync_timer.start()
        self._counts_timer = QTimer(self)
        self._counts_timer.setInterval(COUNTS_REFRESH_MS)
        self._counts_timer.timeout.connect(self.refresh_counts)
        self._counts_timer.start()
        self._status_timer = QTimer(self)
        self._status_timer.setInterval(LINE_STATUS_MS)
        self._status_timer.timeout.connect(self.refresh_line_status)
        self._status_timer.start()
        self._sync_busy = False
        self.held_reasons: list[str] = []
        self._recipe_shown = ctx.runtime.cfg.recipe.name
        self.refresh_line_status()
        self._update_line_state()
        self.refresh_sync()
        self.refresh_counts()
        self._load_recent()

    # --- commands (gated, audited) --------------------------------------------------------
    def _allowed(self, permission: str, what: str) -> bool:
        try:
            self.ctx.require(permission, what)
        except PermissionDenied:
            return False
        return True

    def start_line(self) -> None:
        if self._allowed("run", "start the line"):
            self.ctx.line.start()
            self.ctx.audit("line.started", self.ctx.runtime.cfg.station.station)
            self._update_line_state()

    def stop_line(self) -> None:
        if self._allowed("run", "stop the line"):
            self.ctx.line.stop()
            self.ctx.audit("line.stopped", self.ctx.runtime.cfg.station.station)
            self._update_line_state()

    def trigger_once(self) -> None:
        if self._allowed("trigger", "trigger an inspection"):
            self.ctx.line.trigger()
            self.ctx.audit("line.manual_trigger", self.ctx.runtime.cfg.station.station)

    def set_heatmap(self, on: bool) -> None:
        self.live.set_overlay_visible(on)
        if self.heatmap_button.isChecked() != on:
            self.heatmap_button.setChecked(on)

    # --- what arrives from the line -------------------------------------------------------
    def pull_frame(self) -> None:
        item = self.ctx.line.latest.newer_than(self._seq)
        if item is None:
            preview = self.ctx.line.preview.newer_than(self._preview_seq)
            if preview is not None:
                self._preview_seq, image = preview
                self._follow_bit_depth(image, None)
                self.live.set_frame(image, None)
            return
        self._seq = item.seq
        frame = item.outcome.frame
        if frame is not None:
            self._follow_bit_depth(frame.image, frame.pixel_format)
        self.live.set_frame(frame.image if frame is not None else None, item.overlay)
        if frame is None:
            self.live.caption = f"no image: {(item.outcome.fault or {}).get('message', 'capture fault')}"

    def _follow_bit_depth(self, image, pixel_format: str | None) -> None:
        """16-bit mono frames get the window / level controls; 8-bit ones are shown as they are."""
        if image.dtype.itemsize == 2 and image.ndim == 2:
            self.window_level.activate(top_of(image, pixel_format))
        else:
            self.window_level.deactivate()

    def show_result(self, item: ShownResult) -> None:
        """One committed inspection: banner, part, counters, spec checks, strip."""
        out = item.outcome
        det = out.detection
        decision = out.decision.value
        score = f"score {det.score:.3f} / threshold {det.threshold:.3f}" if det is not None else ""
        self.banner.show_verdict(decision, seq=item.seq)  # the why is in the part panel
        self.latency_ms.append((time.perf_counter() - item.committed_at) * 1000.0)
        del self.latency_ms[:-10_000]
        self.part.show_part(out.context.part_id, out.context.lot, out.context.recipe or out.cycle.recipe,
                            out.reason, score)
        self.counters.add(decision)
        self.spec.show_checks(out.spec_checks)
        self.strip.push(decision, out.context.part_id, item.thumb)
        if decision == "check_capture":
            self.ctx.notifier.alarm(f"Check capture on {out.context.part_id}: {out.reason}")

    def _on_cycle_state(self, old: str, new: str) -> None:
        if new == "faulted":
            self.ctx.notifier.alarm(f"Line faulted: {self.ctx.runtime.cycle.fault_reason or 'see the log'}")
        self.refresh_line_status()
        self._update_line_state()

    def _on_line_error(self, exc: BaseException) -> None:
        self.ctx.notifier.error("The line stopped", exc)
        self._update_line_state()

    def _update_line_state(self) -> None:
        line = self.ctx.line
        held = self.held_reasons
        if held:
            self.line_state.setText(f"{HELD_WORD} · {'running' if line.running else 'stopped'}")
        elif line.running:
            pace = "line trigger" if line.hardware_paced else f"{1.0 / line.period_s:.1f} parts/s"
            self.line_state.setText(f"RUNNING · {pace}")
        else:
            self.line_state.setText(f"STOPPED · cycle {self.ctx.runtime.cycle.state.value}")
        why = f"{HELD_WORD}: " + "; ".join(held) if held else ""
        self.start_button.setEnabled(self.ctx.can("run") and not line.running and not held)
        self.start_button.setToolTip(why or "Run the line")
        self.trigger_button.setEnabled(self.ctx.can("trigger") and not held)
        self.trigger_button.setToolTip(why or "Inspect one part now")
        self.stop_button.setEnabled(self.ctx.can("run") and line.running)

    def refresh_line_status(self) -> None:
        """Suspension reasons, recipe and line link: cheap reads, on the status timer."""
        if self._closed:
            return
        rt = self.ctx.runtime
        reasons = active_suspensions(rt.cycle)
        if reasons != self.held_reasons:
            self.held_reasons = reasons
            self.held.show_reasons(reasons)
            self._update_line_state()
        status = line_status(rt)
        recipe = active_recipe(rt, status)
        self.line_panel.show_line(recipe, line_links(rt, status))
        if recipe.name != self._recipe_shown:
            self._recipe_shown = recipe.name
            self.window_level.set_presets(display_presets(rt.cfg, recipe.name), recipe_grey_window(rt.cfg, recipe.name))

    # --- periodic reads on the task runner ------------------------------------------------
    def refresh_sync(self) -> None:
        if self._sync_busy or self._closed:
            return
        self._sync_busy = True
        store, stale = self.ctx.store, self.ctx.ui_cfg.sync_stale_s

        def done(s: SyncState) -> None:
            self._sync_busy = False
            if not self._closed:
                self.sync.show_sync(s)

        def failed(exc: BaseException) -> None:
            self._sync_busy = False

        self.ctx.tasks.run(lambda _c: read_sync_state(store, stale), done, failed, label="sync state")

    def refresh_counts(self) -> None:
        store = self.ctx.store
        since = shift_start(datetime.now().astimezone(), self.ctx.ui_cfg.shift_hours)

        def done(counts: dict[str, int]) -> None:
            if not self._closed:
                self.counters.set_counts(counts)

        self.ctx.tasks.run(lambda _c: store.decision_counts(since=since), done, label="shift counters")

    def _load_recent(self) -> None:
        """The strip after a restart: the last results from the database, with thumbnails."""
        store, n, cfg = self.ctx.store, len(self.strip.tiles), self.ctx.runtime.cfg

        def load(control) -> list[tuple[str, str, object]]:
            import cv2  # only here: reading saved images back
            items = []
            for doc in store.recent(n):
                control.check()
                thumb = None
                path = store.image_path(doc["id"]) if doc.get("id") else None
                if path is not None:
                    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
                    thumb = None if img is None else result_thumbnail(
                        cfg, img, doc.get("recipe"), pixel_format=(doc.get("camera") or {}).get("pixel_format"),
                        bit_depth=(doc.get("image") or {}).get("bit_depth"))
                items.append((doc["decision"], doc.get("part_id") or "", thumb))
            return items

        def done(items) -> None:
            if not self._closed and not self.strip.decisions:
                self.strip.set_items(items)

        self.ctx.tasks.run(load, done, label="recent results")

    def close_page(self) -> None:
        self._closed = True
        for t in (self._frame_timer, self._sync_timer, self._counts_timer, self._status_timer):
            t.stop()
        for sig, slot in ((self.ctx.events.inspected, self.show_result),
                          (self.ctx.events.cycle_state, self._on_cycle_state),
                          (self.ctx.events.line_error, self._on_line_error)):
            try:
                sig.disconnect(slot)
            except (RuntimeError, TypeError):
                pass
