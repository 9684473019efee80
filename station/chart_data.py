"""The numbers behind the supervisor's charts, as plain queries (no Qt).

- :func:`yield_by_hour`: parts and first-pass yield per hour of the shift;
- :func:`defect_pareto`: defects by the class a supervisor confirmed, else by decision;
- :func:`score_histogram`: recent anomaly scores and the threshold they are judged by;
- :func:`drift_series`: one capture-spec value over the last N inspections with control
  lines (the calibration baseline's mean +- 3 sigma), the spec limits, and the Western
  Electric alarms of :mod:`station.monitor.charts` (what ``linestation monitor`` reports).

Times are UTC (the store's format); the UI shows them in local time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
from sqlalchemy import and_, func, select

from station.monitor.charts import western_electric
from station.store.jsonutil import parse_iso_utc
from station.store.schema import Inspection, Label, SpecResult
from station.store.station_store import StationStore

# Spec checks with a baseline statistic in the calibration profile (rotation is stored
# signed per frame but as |angle| in the baseline, so it is not charted against it).
DRIFT_CHECKS = ("brightness", "focus", "position", "contrast", "noise", "clipping")
CONTROL_SIGMAS = 3.0


@dataclass(frozen=True)
class HourYield:
    hour: datetime  # start of the hour, UTC
    total: int
    passed: int
    rejected: int
    review: int
    check_capture: int

    @property
    def yield_pct(self) -> float | None:
        """Passed share of the parts decided pass or reject (None when none were)."""
        decided = self.passed + self.rejected
        return 100.0 * self.passed / decided if decided else None


def shift_start(hours: float, now: datetime | None = None) -> datetime:
    """The start of a shift of ``hours`` ending now, on a whole hour (chart buckets)."""
    now = now or datetime.now(timezone.utc)
    return (now - timedelta(hours=hours)).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


def yield_by_hour(store: StationStore, since: datetime, *, fill_until: datetime | None = None) -> list[HourYield]:
    """Counts per decision for each hour since ``since``.

    Hours without parts are omitted, unless ``fill_until`` is given: then every hour from
    ``since`` to ``fill_until`` is listed (a chart of the whole shift so far).
    """
    hour = func.substr(Inspection.started_at, 1, 13)  # 'YYYY-MM-DDTHH' of the fixed-width text
    q = (select(hour.label("hour"), Inspection.decision, func.count())
         .where(Inspection.started_at >= since).group_by("hour", Inspection.decision).order_by("hour"))
    by_hour: dict[str, dict[str, int]] = {}
    with store.reader.connect() as conn:
        for h, decision, n in conn.execute(q):
            by_hour.setdefault(h, {})[decision] = int(n)
    out = []
    for h, c in by_hour.items():
        start = parse_iso_utc(f"{h}:00:00.000000Z")
        out.append(HourYield(start, sum(c.values()), c.get("pass", 0), c.get("reject", 0), c.get("review", 0),
                             c.get("check_capture", 0)))
    if fill_until is None:
        return out
    have = {h.hour: h for h in out}
    hour = since.replace(minute=0, second=0, microsecond=0)
    filled = []
    while hour <= fill_until:
        filled.append(have.pop(hour, None) or HourYield(hour, 0, 0, 0, 0, 0))
        hour += timedelta(hours=1)
    return sorted(filled + list(have.values()), key=lambda h: h.hour)


@dataclass(frozen=True)
class ParetoBar:
    category: str  # a confirmed defect class, or "reject (not reviewed)" / "review (not reviewed)"
    count: int
    cumulative_pct: float


def defect_pareto(store: StationStore, since: datetime) -> list[ParetoBar]:
    """Defects since ``since``, most frequent first, with the cumulative share.

    A part a supervisor reviewed counts under the defect class confirmed (parts marked
    good or sent to recapture are not defects); an unreviewed reject or review counts
    under its decision.
    """
    latest = (select(Label.inspection_id, func.max(Label.id).label("lid"))
              .where(Label.source == "review").group_by(Label.inspection_id).subquery())
    q = (select(Inspection.decision, Label.label, Label.defect_class)
         .select_from(Inspection)
         .outerjoin(latest, latest.c.inspection_id == Inspection.id)
         .outerjoin(Label, Label.id == latest.c.lid)
         .where(Inspection.started_at >= since, Inspection.decision.in_(("reject", "review"))))
    counts: dict[str, int] = {}
    with store.reader.connect() as conn:
        for decision, label, defect_class in conn.execute(q):
            if label is None:
                key = f"{decision} (not reviewed)"
            elif label == "defect":
                key = defect_class or "defect"
            else:
                continue
            counts[key] = counts.get(key, 0) + 1
    total = sum(counts.values())
    bars, running = [], 0
    for key, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        running += n
        bars.append(ParetoBar(key, n, 100.0 * running / total))
    return bars


@dataclass(frozen=True)
class ScoreHistogram:
    edges: np.ndarray  # bins + 1 edges
    counts: np.ndarray  # per bin
    threshold: float | None
    n: int


def recent_scores(store: StationStore, n: int = 500) -> tuple[np.ndarray, float | None]:
    """The last ``n`` anomaly scores and the threshold of the newest scored record."""
    q = (select(Inspection.score, Inspection.detection).where(Inspection.score.is_not(None))
         .order_by(Inspection.id.desc()).limit(n))
    with store.reader.connect() as conn:
        rows = conn.execute(q).all()
    scores = np.array([r.score for r in rows], dtype=np.float64)
    threshold = None
    if rows and isinstance(rows[0].detection, dict):
        threshold = rows[0].detection.get("threshold")
    return scores, threshold


def score_histogram(store: StationStore, n: int = 500, bins: int = 30,
                    threshold: float | None = None) -> ScoreHistogram:
    """Histogram of recent scores; ``threshold`` defaults to the newest record's.

    The range always includes the threshold so the line is on the chart.
    """
    scores, recorded = recent_scores(store, n)
    thr = threshold if threshold is not None else recorded
    if scores.size == 0:
        return ScoreHistogram(np.linspace(0, 1, bins + 1), np.zeros(bins, int), thr, 0)
    lo = min(float(scores.min()), thr if thr is not None else np.inf)
    hi = max(float(scores.max()), thr if thr is not None else -np.inf)
    if hi <= lo:
        hi = lo + 1.0
    pad = 0.05 * (hi - lo)
    counts, edges = np.histogram(scores, bins=bins, range=(lo - pad, hi + pad))
    return ScoreHistogram(edges, counts, thr, int(scores.size))


@dataclass
class DriftSeries:
    check: str
    inspection_ids: list[str]
    values: np.ndarray  # oldest first
    center: float | None  # baseline mean
    lcl: float | None  # lower control limit (mean - 3 sigma)
    ucl: float | None  # upper control limit (mean + 3 sigma)
    spec_low: float | None  # the tolerances' limits (a breach is a capture fault)
    spec_high: float | None
    unit: str = ""
    out_of_control: list[int] = field(default_factory=list)  # indices outside lcl..ucl
    alarms: list[str] = field(default_factory=list)  # Western Electric rules that fired (monitor)
    alarm_rules: list[str] = field(default_factory=list)  # their short names, "WE1".."WE4"


def drift_series(store: StationStore, check: str, n: int = 200, profile=None) -> DriftSeries:
    """One spec value over the last ``n`` inspections, with control and spec lines.

    ``profile`` (a :class:`calibration.profile.CalibrationProfile`) supplies the baseline
    measured at calibration; without it (or its baseline) only the spec limits recorded
    with the checks are drawn.
    """
    if check not in DRIFT_CHECKS:
        raise ValueError(f"no drift chart for {check!r} (choose one of {', '.join(DRIFT_CHECKS)})")
    q = (select(SpecResult.inspection_id, SpecResult.value, SpecResult.low, SpecResult.high, SpecResult.unit)
         .join(Inspection, and_(Inspection.id == SpecResult.inspection_id))
         .where(SpecResult.name == check, SpecResult.value.is_not(None))
         .order_by(Inspection.id.desc()).limit(n))
    with store.reader.connect() as conn:
        rows = list(reversed(conn.execute(q).all()))
    values = np.array([r.value for r in rows], dtype=np.float64)
    center = lcl = ucl = None
    baseline = getattr(profile, "baseline", None) if profile is not None else None
    stat = getattr(baseline, check, None) if baseline is not None else None
    if stat is not None:
        center = stat.mean
        lcl = stat.mean - CONTROL_SIGMAS * stat.std
        ucl = stat.mean + CONTROL_SIGMAS * stat.std
        if check in ("position", "clipping", "noise"):  # non-negative by nature
            lcl = max(0.0, lcl)
    last = rows[-1] if rows else None
    out = [] if center is None else [i for i, v in enumerate(values) if v < lcl or v > ucl]
    fired = []
    if stat is not None and stat.std > 0 and values.size:
        # the same rules `linestation monitor` raises alarms on
        fired = western_electric(check, values.tolist(), stat.mean, stat.std)
    return DriftSeries(check, [r.inspection_id for r in rows], values, center, lcl, ucl,
                       last.low if last else None, last.high if last else None,
                       last.unit if last else "", out, [a.message for a in fired], [a.rule for a in fired])
