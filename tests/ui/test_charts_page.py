"""Charts: the numbers (Qt-free queries) and the pyqtgraph page that draws them."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pyqtgraph as pg
import pytest

from review_fixtures import inspect_parts, partb_ctx, partb_station, partb_template, wait_idle  # noqa: F401
from station.chart_data import defect_pareto, drift_series, score_histogram, shift_start, yield_by_hour
from station.review_labels import record_review_label
from station.ui.charts import QtChartsPage
from station.ui.review_queue import review_queue


@pytest.fixture
def busy_station(partb_station):
    rt = partb_station(camera={"defect_rate": 0.5})
    outcomes = inspect_parts(rt, 16)
    return rt, outcomes


def test_chart_numbers_match_the_inspections(busy_station):
    rt, outcomes = busy_station
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    hours = yield_by_hour(rt.store, since)
    assert sum(h.total for h in hours) == len(outcomes)
    decisions = [o.decision.value for o in outcomes]
    assert sum(h.passed for h in hours) == decisions.count("pass")
    assert sum(h.rejected for h in hours) == decisions.count("reject")

    queued = review_queue(rt.store)
    assert queued, decisions
    record_review_label(rt.store, queued[0].inspection_id, "confirm_defect", username="sue", defect_class="scratch")
    bars = defect_pareto(rt.store, since)
    by_name = {b.category: b.count for b in bars}
    assert by_name["scratch"] == 1
    assert sum(by_name.values()) == len(queued)  # the other queued parts count under their decision
    assert bars[-1].cumulative_pct == pytest.approx(100.0)
    assert [b.count for b in bars] == sorted((b.count for b in bars), reverse=True)

    hist = score_histogram(rt.store, threshold=rt.detector.threshold)
    scored = [o for o in outcomes if o.detection is not None]
    assert hist.n == len(scored) == int(hist.counts.sum())
    assert hist.edges[0] <= rt.detector.threshold <= hist.edges[-1]

    profile = rt.checker.profile
    drift = drift_series(rt.store, "brightness", 100, profile)
    assert drift.values.size == len([o for o in outcomes if o.spec_checks])
    base = profile.baseline.brightness
    assert drift.center == pytest.approx(base.mean)
    assert drift.ucl == pytest.approx(base.mean + 3 * base.std)
    assert drift.spec_low == pytest.approx(profile.tolerances.brightness_low)
    with pytest.raises(ValueError, match="no drift chart"):
        drift_series(rt.store, "colour", 10, profile)


def test_empty_store_gives_empty_charts(partb_station):
    rt = partb_station()
    since = shift_start(8.0)
    assert yield_by_hour(rt.store, since) == [] and defect_pareto(rt.store, since) == []
    now = datetime.now(timezone.utc)
    filled = yield_by_hour(rt.store, shift_start(8.0, now), fill_until=now)
    assert len(filled) == 8 and all(h.total == 0 and h.yield_pct is None for h in filled)
    hist = score_histogram(rt.store, threshold=0.5)
    assert hist.n == 0 and hist.counts.sum() == 0
    assert drift_series(rt.store, "focus", 10, None).values.size == 0


def test_dim_frames_show_as_out_of_control_on_the_drift_chart(partb_station):
    rt = partb_station()
    rt.camera.inject("dim", 2)
    inspect_parts(rt, 6)
    drift = drift_series(rt.store, "brightness", 50, rt.checker.profile)
    assert len(drift.out_of_control) == 2
    assert all(drift.values[i] < drift.lcl for i in drift.out_of_control)
    assert any("beyond 3 sigma" in a for a in drift.alarms) and "WE1" in drift.alarm_rules  # monitor's rule 1


def test_charts_page_draws_all_four_charts(qtbot, busy_station, partb_ctx):
    rt, outcomes = busy_station
    ctx = partb_ctx(rt, "supervisor")
    page = partb_ctx.open(QtChartsPage, ctx)
    qtbot.waitUntil(lambda: page.data is not None, timeout=20_000)
    wait_idle(qtbot, ctx)

    def items(plot, kind):
        return [i for i in plot.getPlotItem().items if isinstance(i, kind)]

    assert items(page.yield_plot, pg.BarGraphItem)
    assert items(page.pareto_plot, pg.BarGraphItem)
    thresholds = items(page.hist_plot, pg.InfiniteLine)
    assert [round(t.value(), 6) for t in thresholds] == [round(rt.detector.threshold, 6)]
    curves = items(page.drift_plot, pg.PlotDataItem)
    assert curves and len(curves[0].getData()[1]) == page.data.drift.values.size > 0
    assert {round(t.value(), 6) for t in items(page.drift_plot, pg.InfiniteLine)} >= {
        round(page.data.drift.center, 6), round(page.data.drift.ucl, 6)}
    assert f"{len(outcomes)} parts" in page.summary.text()

    page.check_box.setCurrentText("focus")
    qtbot.waitUntil(lambda: page.data.drift.check == "focus", timeout=20_000)
    assert np.all(np.isfinite(page.data.drift.values))
    page.close_page()
