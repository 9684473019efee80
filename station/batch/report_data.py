"""The numbers behind the shift / lot report, computed from result rows alone.

Rows are the batch result rows of :mod:`station.batch.rows` (one per image). Everything
here is plain Python over those dicts, so the report can be rebuilt from the JSON-lines
files anywhere (locally, in the AWS Batch merge job) without the database or the model.

Yield is defined as on the station's charts (:class:`station.chart_data.HourYield`): the
passed share of the parts decided pass or reject. Reviews and capture faults are not
decided yet, so they count in neither numerator nor denominator; the report shows them
beside the yield instead of hiding them in it.
"""
from __future__ import annotations

import heapq
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from station.batch.rows import DECISIONS, yield_fraction

NO_LOT = "(no lot)"
ERROR_ROWS_KEPT = 50  # rows listed in the report; the count covers all (a run may have 10^5 errors)
NO_TIME = "(no time)"


@dataclass(frozen=True)
class GroupYield:
    """Decision counts of one group of rows (an hour, a lot)."""

    key: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def yield_pct(self) -> float | None:
        return yield_pct(self.counts)


@dataclass(frozen=True)
class ParetoBar:
    category: str
    count: int
    cumulative_pct: float


@dataclass
class ReportData:
    """Everything the report shows, derived from the rows."""

    total: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DECISIONS, 0))
    error_count: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)  # the first ERROR_ROWS_KEPT of them
    by_hour: list[GroupYield] = field(default_factory=list)
    hour_source: str = "inspected_at"
    by_lot: list[GroupYield] = field(default_factory=list)
    pareto_decision: list[ParetoBar] = field(default_factory=list)
    pareto_kind: list[ParetoBar] = field(default_factory=list)
    pareto_spec: list[ParetoBar] = field(default_factory=list)
    pareto_error: list[ParetoBar] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    threshold: float | None = None
    thresholds: list[float] = field(default_factory=list)
    worst: list[dict[str, Any]] = field(default_factory=list)
    comparison: dict[str, dict[str, int]] | None = None
    changed: int = 0
    compared: int = 0
    models: list[tuple[str, str, str, int]] = field(default_factory=list)  # id, version, hash, rows
    runs: list[tuple[str, int]] = field(default_factory=list)
    shards: list[int] = field(default_factory=list)
    first_inspected: str | None = None
    last_inspected: str | None = None
    stations: list[str] = field(default_factory=list)
    recipes: list[str] = field(default_factory=list)

    @property
    def yield_pct(self) -> float | None:
        return yield_pct(self.counts)


def yield_pct(counts: dict[str, int]) -> float | None:
    y = yield_fraction(counts)
    return None if y is None else 100.0 * y


def pareto(counter: Counter) -> list[ParetoBar]:
    """Most frequent first (ties by name), with the cumulative share of the total."""
    total = sum(counter.values())
    bars, running = [], 0
    for key, n in sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0]))):
        if n <= 0:
            continue
        running += n
        bars.append(ParetoBar(str(key), int(n), 100.0 * running / total))
    return bars


def finite_score(row: dict[str, Any]) -> float | None:
    s = row.get("score")
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
        return None
    return float(s)


def severity(row: dict[str, Any]) -> float:
    """Score relative to the row's own threshold (rows of different models compare)."""
    s, t = finite_score(row), row.get("threshold")
    if s is None:
        return -math.inf
    if isinstance(t, (int, float)) and math.isfinite(t) and t > 0:
        return s / float(t)
    return s


def row_time(row: dict[str, Any]) -> tuple[str | None, str]:
    """The time a row is bucketed by: when the part was captured if the row knows, else
    when the batch inspected it (re-inspections of old images then group by run time)."""
    info = row.get("image_info") or {}
    for source, value in (("captured_at", row.get("captured_at")),
                          ("captured_at", info.get("captured_at") if isinstance(info, dict) else None),
                          ("inspected_at", row.get("inspected_at"))):
        if isinstance(value, str) and len(value) >= 13:
            return value, source
    return None, "inspected_at"


def _anomaly_kinds(row: dict[str, Any]) -> list[str]:
    det = row.get("detection") or {}
    lfv = det.get("DetectAnomalyResult") if isinstance(det, dict) else None
    names = []
    for a in (lfv or {}).get("Anomalies") or []:
        name = a.get("Name") if isinstance(a, dict) else None
        if name and name != "background":
            names.append(str(name))
    return names


def _error_kind(message: str) -> str:
    head = message.split(":", 1)[0].strip()
    return head if head and len(head) <= 40 and " " not in head else "error"


def compute(rows: Iterable[dict[str, Any]], *, worst_n: int = 8) -> ReportData:
    """One pass over ``rows`` (any iterable, read once) into :class:`ReportData`."""
    d = ReportData()
    hours: dict[str, Counter] = {}
    lots: dict[str, Counter] = {}
    kinds, specs, errors, decisions = Counter(), Counter(), Counter(), Counter()
    thresholds, models, runs = Counter(), Counter(), Counter()
    shards, stations, recipes = set(), set(), set()
    comparison: dict[str, dict[str, int]] = {}
    worst: list[tuple[float, int, dict[str, Any]]] = []  # min-heap of the worst_n kept (memory stays flat)
    hour_sources = Counter()
    for i, row in enumerate(rows):
        d.total += 1
        decision = str(row.get("decision") or "check_capture")
        d.counts[decision] = d.counts.get(decision, 0) + 1
        t, source = row_time(row)
        hour_sources[source] += 1
        hours.setdefault(t[:13] if t else NO_TIME, Counter())[decision] += 1
        lots.setdefault(str(row.get("lot") or NO_LOT), Counter())[decision] += 1
        if decision != "pass":
            decisions[decision] += 1
        if decision in ("reject", "review"):
            for kind in _anomaly_kinds(row) or ["(no anomaly region)"]:
                kinds[kind] += 1
        for check in row.get("spec_checks") or []:
            if isinstance(check, dict) and check.get("passed") is False:
                specs[str(check.get("name") or "?")] += 1
        if row.get("error"):
            d.error_count += 1
            if len(d.errors) < ERROR_ROWS_KEPT:
                d.errors.append(row)
            errors[_error_kind(str(row["error"]))] += 1
        score = finite_score(row)
        if score is not None:
            d.scores.append(score)
            thr = row.get("threshold")
            if isinstance(thr, (int, float)) and math.isfinite(thr):
                thresholds[float(thr)] += 1
            entry = (severity(row), -i, row)  # -i: ties keep the earlier row; i is unique, rows never compared
            if len(worst) < worst_n:
                heapq.heappush(worst, entry)
            elif worst_n > 0 and entry[:2] > worst[0][:2]:
                heapq.heapreplace(worst, entry)
        if row.get("model_id"):
            h = ((row.get("detection") or {}).get("model_hash") or "") if isinstance(row.get("detection"), dict) else ""
            models[(str(row["model_id"]), str(row.get("model_version") or ""), str(h))] += 1
        if row.get("run_id"):
            runs[str(row["run_id"])] += 1
        if isinstance(row.get("shard"), int):
            shards.add(row["shard"])
        for target, key in ((stations, "station"), (recipes, "recipe")):
            if row.get(key):
                target.add(str(row[key]))
        inspected = row.get("inspected_at")
        if isinstance(inspected, str):
            d.first_inspected = min(d.first_inspected or inspected, inspected)
            d.last_inspected = max(d.last_inspected or inspected, inspected)
        line = row.get("line_decision")
        if line:
            comparison.setdefault(str(line), {})
            comparison[str(line)][decision] = comparison[str(line)].get(decision, 0) + 1
            d.compared += 1
            d.changed += int(str(line) != decision)
    d.by_hour = [GroupYield(k, dict(c)) for k, c in sorted(hours.items())]
    d.hour_source = hour_sources.most_common(1)[0][0] if hour_sources else "inspected_at"
    d.by_lot = [GroupYield(k, dict(c)) for k, c in sorted(lots.items())]
    d.pareto_decision, d.pareto_kind = pareto(decisions), pareto(kinds)
    d.pareto_spec, d.pareto_error = pareto(specs), pareto(errors)
    d.thresholds = sorted(thresholds)
    d.threshold = thresholds.most_common(1)[0][0] if thresholds else None
    d.worst = [r for _, _, r in sorted(worst, key=lambda t: (t[0], t[1]), reverse=True)]
    d.comparison = comparison or None
    d.models = [(m, v, h, n) for (m, v, h), n in sorted(models.items(), key=lambda kv: -kv[1])]
    d.runs = sorted(runs.items())
    d.shards, d.stations, d.recipes = sorted(shards), sorted(stations), sorted(recipes)
    return d
