"""The supervisor's charts (pyqtgraph): yield per hour, defect Pareto, score histogram with
the threshold line, and a drift control chart of one capture-spec value.

The numbers come from :mod:`station.chart_data` on the task runner; this module only
draws them. Charts refresh every 30 s while visible, and on the Refresh button.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QHideEvent, QShowEvent
from PySide6.QtWidgets import QComboBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from station.chart_data import (
    DRIFT_CHECKS,
    DriftSeries,
    HourYield,
    ParetoBar,
    ScoreHistogram,
    defect_pareto,
    drift_series,
    score_histogram,
    shift_start,
    yield_by_hour,
)

REFRESH_MS = 30_000
DRIFT_POINTS = 200
HIST_SCORES = 500
GOOD, BAD, WARN, LINE = "#2e7d32", "#c62828", "#ef6c00", "#1565c0"


@dataclass
class ChartData:
    """Everything the four charts show, gathered in one background query."""

    hours: list[HourYield]
    pareto: list[ParetoBar]
    histogram: ScoreHistogram
    drift: DriftSeries


def gather(store: Any, *, shift_hours: float, threshold: float | None, check: str, profile: Any) -> ChartData:
    """All chart data for the current shift (runs off the GUI thread)."""
    since = shift_start(shift_hours)
    return ChartData(yield_by_hour(store, since, fill_until=datetime.now(timezone.utc)), defect_pareto(store, since),
                     score_histogram(store, HIST_SCORES, threshold=threshold),
                     drift_series(store, check, DRIFT_POINTS, profile))


def _plot(title: str, left: str, bottom: str) -> pg.PlotWidget:
    w = pg.PlotWidget(background="w")
    w.setTitle(title, color="#222", size="14pt")
    w.setLabel("left", left)
    w.setLabel("bottom", bottom)
    w.showGrid(x=False, y=True, alpha=0.25)
    w.setMenuEnabled(False)
    w.setMouseEnabled(x=False, y=False)
    w.hideButtons()
    for axis in ("left", "bottom"):
        w.getAxis(axis).enableAutoSIPrefix(False)  # "(x0.001)" on an axis confuses people
    return w


def dispose_plot(plot: pg.PlotWidget) -> None:
    """Free a plot's context menus: pyqtgraph makes them parentless, so deleting the plot
    alone would leave them behind on every sign-in / sign-out."""
    item = plot.getPlotItem()
    for menu in (item.ctrlMenu, item.vb.menu if item.vb is not None else None):
        if menu is not None:
            menu.deleteLater()


class QtChartsPage(QWidget):
    """Four charts of the shift. ``ctx`` is the :class:`~station.ui.context.UiContext`."""

    def __init__(self, ctx: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.data: ChartData | None = None
        self.drift_alarms: list[str] = []
        self._closed = False
        self._loading = False

        self.yield_plot = _plot("Yield per hour", "yield %", "hour")
        self.pareto_plot = _plot("Defect Pareto", "% of defects", "")
        self.hist_plot = _plot("Anomaly scores", "parts", "score")
        self.drift_plot = _plot("Capture drift", "", "inspection (oldest left)")
        self.check_box = QComboBox()
        self.check_box.addItems(list(DRIFT_CHECKS))
        self.check_box.currentTextChanged.connect(lambda _t: self.refresh())
        self.refresh_btn = QPushButton("Refresh")
        self.refresh_btn.clicked.connect(self.refresh)
        self.summary = QLabel("")
        self.summary.setObjectName("chartsSummary")

        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(QLabel("Drift of"))
        top.addWidget(self.check_box)
        top.addWidget(self.refresh_btn)
        grid = QGridLayout()
        grid.addWidget(self.yield_plot, 0, 0)
        grid.addWidget(self.pareto_plot, 0, 1)
        grid.addWidget(self.hist_plot, 1, 0)
        grid.addWidget(self.drift_plot, 1, 1)
        root = QVBoxLayout(self)
        root.addLayout(top)
        root.addLayout(grid, 1)

        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        self.refresh()

    # --- lifecycle -------------------------------------------------------------------
    def close_page(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._timer.stop()
        for plot in (self.yield_plot, self.pareto_plot, self.hist_plot, self.drift_plot):
            dispose_plot(plot)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if not self._closed:
            self._timer.start()
            self.refresh()

    def hideEvent(self, event: QHideEvent) -> None:  # noqa: N802 - Qt API
        self._timer.stop()
        super().hideEvent(event)

    # --- data ------------------------------------------------------------------------
    def refresh(self) -> None:
        if self._closed or self._loading:
            return
        rt = self.ctx.runtime
        store, hours = rt.store, rt.cfg.ui.shift_hours
        threshold = getattr(rt.detector, "threshold", None)
        profile = getattr(rt.checker, "profile", None)
        check = self.check_box.currentText()
        self._loading = True
        self.ctx.tasks.run(lambda _c: gather(store, shift_hours=hours, threshold=threshold, check=check,
                                             profile=profile),
                           self._show, self._failed, label="load charts")

    def _failed(self, exc: BaseException) -> None:
        self._loading = False
        if not self._closed:
            self.ctx.notifier.error("charts could not be loaded", exc)

    def _show(self, data: ChartData) -> None:
        self._loading = False
        if self._closed:
            return
        self.data = data
        self._draw_yield(data.hours)
        self._draw_pareto(data.pareto)
        self._draw_histogram(data.histogram)
        self._draw_drift(data.drift)
        total = sum(h.total for h in data.hours)
        passed = sum(h.passed for h in data.hours)
        decided = passed + sum(h.rejected for h in data.hours)
        yld = f"{100.0 * passed / decided:.1f} %" if decided else "n/a"
        self.summary.setText(f"This shift: {total} parts, yield {yld}")

    # --- drawing ---------------------------------------------------------------------
    def _draw_yield(self, hours: list[HourYield]) -> None:
        p = self.yield_plot
        p.clear()
        shown = [(i, h) for i, h in enumerate(hours) if h.yield_pct is not None]  # hours with decided parts
        if shown:
            xs = np.array([i for i, _ in shown], dtype=float)
            ys = np.array([h.yield_pct for _, h in shown])
            brushes = [pg.mkBrush(GOOD if y >= 95 else WARN if y >= 85 else BAD) for y in ys]
            p.addItem(pg.BarGraphItem(x=xs, height=ys, width=0.7, brushes=brushes))
            for x, (_, h) in zip(xs, shown):
                t = pg.TextItem(f"{h.yield_pct:.0f}%\n{h.total} parts", color="#222", anchor=(0.5, 1.0))
                t.setPos(float(x), float(h.yield_pct))
                p.addItem(t)
        ticks = [(float(i), h.hour.astimezone().strftime("%H:00")) for i, h in enumerate(hours)]
        p.getAxis("bottom").setTicks([ticks])
        p.setYRange(0, 112, padding=0)
        p.setXRange(-0.6, max(len(hours), 1) - 0.4, padding=0)

    def _draw_pareto(self, bars: list[ParetoBar]) -> None:
        p = self.pareto_plot
        p.clear()
        total = sum(b.count for b in bars)
        if total:
            xs = np.arange(len(bars), dtype=float)
            share = np.array([100.0 * b.count / total for b in bars])
            p.addItem(pg.BarGraphItem(x=xs, height=share, width=0.7, brush=pg.mkBrush(BAD)))
            p.plot(xs, [b.cumulative_pct for b in bars], pen=pg.mkPen(LINE, width=3), symbol="o",
                   symbolBrush=LINE, symbolSize=9)
            for x, b in zip(xs, bars):
                t = pg.TextItem(str(b.count), color="#222", anchor=(0.5, 1.0))
                t.setPos(float(x), 100.0 * b.count / total)
                p.addItem(t)
        p.getAxis("bottom").setTicks([[(float(i), b.category.replace("_", " ")) for i, b in enumerate(bars)]])
        p.setYRange(0, 105, padding=0)
        p.setXRange(-0.6, max(len(bars), 1) - 0.4, padding=0)

    def _draw_histogram(self, h: ScoreHistogram) -> None:
        p = self.hist_plot
        p.clear()
        p.plot(h.edges, h.counts, stepMode="center", fillLevel=0, brush=pg.mkBrush(LINE + "80"),
               pen=pg.mkPen(LINE, width=2))
        if h.threshold is not None:
            line = pg.InfiniteLine(pos=h.threshold, angle=90, pen=pg.mkPen(BAD, width=3),
                                   label=f"threshold {h.threshold:.3g}",
                                   labelOpts={"position": 0.9, "color": BAD, "fill": "#ffffffcc"})
            p.addItem(line)
        p.setTitle(f"Anomaly scores (last {h.n})", color="#222", size="14pt")

    def _draw_drift(self, d: DriftSeries) -> None:
        p = self.drift_plot
        p.clear()
        rules = d.alarm_rules
        title = f"Capture drift: {d.check}" + (f"   ALARM {', '.join(rules)}" if rules else "")
        p.setTitle(title, color=BAD if rules else "#222", size="14pt")
        self.drift_alarms = d.alarms
        p.setLabel("left", f"{d.check} ({d.unit})" if d.unit else d.check)
        xs = np.arange(d.values.size, dtype=float)
        if d.values.size:
            p.plot(xs, d.values, pen=pg.mkPen("#444", width=2), symbol="o", symbolSize=5, symbolBrush="#444")
        if d.out_of_control:
            idx = np.array(d.out_of_control)
            p.plot(xs[idx], d.values[idx], pen=None, symbol="o", symbolSize=10, symbolBrush=BAD)
        lines = [(d.center, GOOD, Qt.PenStyle.SolidLine, "baseline", 0.03),
                 (d.ucl, WARN, Qt.PenStyle.DashLine, "UCL +3σ", 0.18), (d.lcl, WARN, Qt.PenStyle.DashLine, "LCL -3σ", 0.33),
                 (d.spec_high, BAD, Qt.PenStyle.DotLine, "spec high", 0.03),
                 (d.spec_low, BAD, Qt.PenStyle.DotLine, "spec low", 0.03)]
        for value, colour, style, name, at in lines:
            if value is None:
                continue
            p.addItem(pg.InfiniteLine(pos=value, angle=0, pen=pg.mkPen(colour, width=2, style=style),
                                      label=name, labelOpts={"position": at, "color": colour, "anchors": [(0, 1), (0, 1)]}))
        # every point and line on the chart: a far-off point is the one that matters
        ys = [v for v in (*d.values.tolist(), d.center, d.ucl, d.lcl, d.spec_low, d.spec_high) if v is not None]
        if ys:
            lo, hi = min(ys), max(ys)
            pad = 0.08 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.1
            p.setYRange(lo - pad, hi + pad, padding=0)
        p.setXRange(-0.5, max(d.values.size, 1) - 0.5, padding=0)
