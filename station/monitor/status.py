"""The station's monitoring status: capture drift, score drift, review disagreement, retraining.

Reads the station database (read-only) and the calibration and model stores; computes
with the pure functions of :mod:`station.monitor.charts` and :mod:`station.monitor.drift`.

**Retraining is recommended** when, since the active model was saved, at least
``retrain.min_new_labels`` review labels arrived, or a line event was recorded (new
supplier, tooling, part revision: ``linestation event record``), or a drift alarm fired.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from calibration.profile import ProfileError, ProfileStore
from station.detect.registry import ModelRegistry, ModelStoreError
from station.monitor.charts import Alarm, ewma, western_electric
from station.monitor.drift import ks_statistic, psi
from station.store.db import make_engine
from station.store.schema import Inspection, Label, LineEvent, SpecResult

DB_FILENAME = "station.db"
CAPTURE_METRICS = ("brightness", "focus", "position")
# A calibration from a handful of near-identical good images can report a spread far
# below what a healthy line shows; a sigma that small would alarm on every part. These
# floors (per metric, in the check's own unit) keep the charts meaningful.
SIGMA_FLOOR = {"brightness": 0.005, "focus": 0.02, "position": 0.5}
# Which way a metric goes wrong: brightness both ways, focus only when it drops (blur),
# position only when the part sits farther from the reference.
BAD_SIDES = {"brightness": (1, -1), "focus": (-1,), "position": (1,)}
# The run rule (8 in a row on one side) needs a precise centre: its standard error is
# sigma / sqrt(n), and below ~30 calibration images that alone trips the rule.
RUN_RULE_MIN_IMAGES = 30
_CAL_RE = re.compile(r"^(?P<serial>[^/]+)/(?P<recipe>[^@]+)@v(?P<version>\d+)")


def _baseline(data_dir: Path, calibration_version: str | None) -> tuple[dict[str, tuple[float, float]], int, str]:
    """({metric: (centre, sigma)}, n images) from the calibration profile named in the records."""
    m = _CAL_RE.match(calibration_version or "")
    if not m:
        return {}, 0, "no calibration version in the recent records"
    try:
        profile = ProfileStore(data_dir / "calibration").load(m["serial"], m["recipe"], int(m["version"]))
    except (ProfileError, OSError, ValueError) as e:
        return {}, 0, f"calibration profile {calibration_version} unreadable: {e}"
    base = profile.baseline
    if base is None:
        return {}, 0, f"calibration profile {calibration_version} has no baseline statistics"
    out = {}
    for name in CAPTURE_METRICS:
        stat = getattr(base, name)
        out[name] = (float(stat.mean), max(float(stat.std), SIGMA_FLOOR[name]))
    return out, int(base.n_images), ""


def capture_drift(conn, data_dir: Path, cfg: Any) -> tuple[dict[str, Any], list[Alarm]]:
    rows = conn.execute(
        select(Inspection.id, Inspection.calibration_version).where(Inspection.fault.is_(None))
        .order_by(Inspection.id.desc()).limit(cfg.window)).all()
    if not rows:
        return {"note": "no inspections yet"}, []
    ids = [r.id for r in rows]
    base, n_cal, why = _baseline(data_dir, rows[0].calibration_version)
    series: dict[str, list[tuple[str, float]]] = {n: [] for n in CAPTURE_METRICS}
    for iid, name, value in conn.execute(
            select(SpecResult.inspection_id, SpecResult.name, SpecResult.value)
            .where(SpecResult.inspection_id.in_(ids), SpecResult.name.in_(CAPTURE_METRICS))):
        if value is not None:
            series[name].append((iid, float(value)))
    out: dict[str, Any] = {"calibration": rows[0].calibration_version}
    if why:
        out["note"] = why
        return out, []
    alarms: list[Alarm] = []
    for name in CAPTURE_METRICS:
        values = [v for _, v in sorted(series[name])]  # ULIDs sort by time: oldest first
        centre, sigma = base[name]
        chart: dict[str, Any] = {"n": len(values), "centre": centre, "sigma": sigma,
                                 "last": values[-1] if values else None}
        if len(values) >= cfg.min_points:
            we = western_electric(name, values, centre, sigma, BAD_SIDES[name],
                                  run_rule=n_cal >= RUN_RULE_MIN_IMAGES)
            zs, ew = ewma(name, values, centre, sigma, lam=cfg.ewma_lambda, L=cfg.ewma_l, sides=BAD_SIDES[name])
            chart.update(mean=sum(values) / len(values), ewma_last=zs[-1], alarms=[a.rule for a in we + ew])
            alarms += we + ew
        out[name] = chart
    return out, alarms


def _reference_scores(registry: ModelRegistry, model_id: str) -> tuple[list[float], str]:
    evals = registry.evaluations(model_id)
    for pref in ("validation", "test"):
        for key, ev in sorted(evals.items(), key=lambda kv: kv[1].get("evaluated_at", ""), reverse=True):
            good = (ev.get("scores") or {}).get("good") or []
            if ev.get("split") == pref and good:
                return [float(s) for s in good], f"{key} {pref}"
    return [], ""


def score_drift(conn, registry: ModelRegistry, active: str | None, cfg: Any) -> tuple[dict[str, Any], list[Alarm]]:
    if active is None:
        return {"note": "no active model"}, []
    ref, source = _reference_scores(registry, active)
    # the last `window` parts this model scored, of which those it called good
    rows = conn.execute(
        select(Inspection.score, Inspection.is_anomalous).where(Inspection.model_id == active,
                                                                 Inspection.score.is_not(None))
        .order_by(Inspection.id.desc()).limit(cfg.window)).all()
    recent = [float(s) for s, anomalous in rows if anomalous is False or anomalous == 0]
    out: dict[str, Any] = {"model": active, "reference": source or None, "n_reference": len(ref), "n_recent": len(recent)}
    if not ref:
        out["note"] = f"no stored evaluation with scores for {active}: run linestation evaluate"
        return out, []
    if len(recent) < cfg.min_scores:
        out["note"] = f"{len(recent)} recent good-called scores, need {cfg.min_scores}"
        return out, []
    # at least ~5 reference scores per PSI bin, or the index measures its own sampling noise
    out["ks"], out["psi"] = ks_statistic(ref, recent), psi(ref, recent, bins=max(2, min(10, len(ref) // 5)))
    alarms = []
    if out["psi"] > cfg.score_psi_alarm or out["ks"] > cfg.score_ks_alarm:
        alarms.append(Alarm("score", "score_drift", len(recent) - 1, out["psi"],
                            f"score distribution moved: PSI {out['psi']:.3f} (alarm {cfg.score_psi_alarm}), "
                            f"KS {out['ks']:.3f} (alarm {cfg.score_ks_alarm}) against {source}"))
    return out, alarms


def review_disagreement(conn, cfg: Any) -> tuple[dict[str, Any], list[Alarm]]:
    """Share of reviewed parts where the person's label contradicts the model's call."""
    rows = conn.execute(
        select(Label.label, Inspection.is_anomalous).join(Inspection, Label.inspection_id == Inspection.id)
        .where(Label.source == "review", Label.label.in_(("good", "defect")), Inspection.is_anomalous.is_not(None))
        .order_by(Label.id.desc()).limit(cfg.window)).all()
    n = len(rows)
    disagree = sum((lab == "good") == bool(anom) for lab, anom in rows)
    out: dict[str, Any] = {"reviewed": n, "disagreements": disagree, "rate": disagree / n if n else None}
    alarms = []
    if n >= cfg.min_reviews and disagree / n > cfg.disagreement_alarm:
        alarms.append(Alarm("review", "disagreement", n - 1, disagree / n,
                            f"reviewers disagree with the model on {disagree}/{n} parts "
                            f"({disagree / n:.0%} > {cfg.disagreement_alarm:.0%})"))
    return out, alarms


def monitor_status(data_dir: Path | str, monitor_cfg: Any, retrain_cfg: Any) -> dict[str, Any]:
    """Everything ``linestation monitor`` prints, as one JSON-able dict."""
    data_dir = Path(data_dir)
    db = data_dir / DB_FILENAME
    if not db.exists():
        raise FileNotFoundError(f"no station database in {data_dir}")
    registry = ModelRegistry(data_dir / "models")
    active = registry.active()
    since = None
    if active is not None:
        try:
            saved = registry.info(active).meta.get("saved_at")
            since = datetime.fromisoformat(saved) if saved else None
        except (ModelStoreError, ValueError):
            since = None
    engine = make_engine(db, writer=False)
    try:
        with engine.connect() as conn:
            capture, a1 = capture_drift(conn, data_dir, monitor_cfg)
            scores, a2 = score_drift(conn, registry, active, monitor_cfg)
            review, a3 = review_disagreement(conn, monitor_cfg)
            lq = select(func.count()).select_from(Label).where(Label.source == "review")
            eq = select(LineEvent.kind, LineEvent.note, LineEvent.username, LineEvent.at).order_by(LineEvent.id)
            if since is not None:
                lq = lq.where(Label.created_at >= since)
                eq = eq.where(LineEvent.at >= since)
            new_labels = int(conn.execute(lq).scalar_one())
            events = [{"kind": k, "note": n, "user": u, "at": at.isoformat() if at else None}
                      for k, n, u, at in conn.execute(eq)]
    finally:
        engine.dispose()
    alarms = a1 + a2 + a3
    reasons = []
    if new_labels >= retrain_cfg.min_new_labels:
        reasons.append(f"{new_labels} new review labels since the active model (>= {retrain_cfg.min_new_labels})")
    if retrain_cfg.on_drift and alarms:
        reasons.append(f"{len(alarms)} drift alarm(s): " + "; ".join(sorted({f'{a.chart} {a.rule}' for a in alarms})))
    if retrain_cfg.on_line_event and events:
        reasons.append(f"{len(events)} line event(s) since the active model: "
                       + ", ".join(sorted({e['kind'] for e in events})))
    return {
        "status": "alarm" if alarms else "ok",
        "checked_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "active_model": active,
        "active_since": since.isoformat() if since else None,
        "alarms": [a.to_json() for a in alarms],
        "capture": capture,
        "score_drift": scores,
        "review": review,
        "line_events": events,
        "new_review_labels": new_labels,
        "retrain": {"recommended": bool(reasons), "reasons": reasons},
    }

