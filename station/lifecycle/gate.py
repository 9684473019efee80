"""The evaluation gate a model must pass before it may run on the line (active or shadow).

Two kinds of check, on evaluations of the same dataset version and split:

- **minimum metrics** from the config (``lifecycle.gate``): image AUROC, recall, false-reject
  rate, optionally pixel AUROC and p99 latency;
- **no regression** against the model active now: image AUROC, recall, F1 and pixel AUROC
  (where both have it) may not drop, and the false-reject rate may not rise, by more than
  ``max_regression``.

Pure functions over evaluation dicts (:func:`station.lifecycle.evaluate.evaluate_model`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HIGHER_IS_BETTER = ("image_auroc", "recall", "f1", "pixel_auroc")


@dataclass
class GateResult:
    passed: bool
    reasons: list[str] = field(default_factory=list)  # why it failed (empty when passed)
    checks: list[dict[str, Any]] = field(default_factory=list)  # every check, passed or not

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": self.reasons, "checks": self.checks}


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def check_gate(candidate: dict[str, Any], active: dict[str, Any] | None, gate: Any) -> GateResult:
    """Check ``candidate`` against the limits in ``gate`` and against ``active``'s evaluation."""
    checks: list[dict[str, Any]] = []

    def add(name: str, ok: bool, value: Any, limit: Any, why: str) -> None:
        checks.append({"check": name, "passed": bool(ok), "value": value, "limit": limit,
                       **({} if ok else {"reason": why})})

    auc = candidate.get("image_auroc")
    add("min_image_auroc", auc is not None and auc >= gate.min_image_auroc, auc, gate.min_image_auroc,
        f"image AUROC {_fmt(auc)} below the minimum {gate.min_image_auroc}" if auc is not None else
        "image AUROC undefined: the evaluation split needs good and defect images")
    rec = candidate.get("recall")
    add("min_recall", rec is not None and rec >= gate.min_recall, rec, gate.min_recall,
        f"recall {_fmt(rec)} below the minimum {gate.min_recall} (defects missed)")
    frr = candidate.get("false_reject_rate")
    add("max_false_reject_rate", frr is not None and frr <= gate.max_false_reject_rate, frr,
        gate.max_false_reject_rate, f"false-reject rate {_fmt(frr)} above the maximum {gate.max_false_reject_rate}")
    if gate.min_pixel_auroc is not None:
        pix = candidate.get("pixel_auroc")
        add("min_pixel_auroc", pix is not None and pix >= gate.min_pixel_auroc, pix, gate.min_pixel_auroc,
            f"pixel AUROC {_fmt(pix)} below the minimum {gate.min_pixel_auroc}" if pix is not None
            else "pixel AUROC required but the split has no masks or the model no heatmap")
    if gate.max_latency_ms_p99 is not None:
        lat = candidate.get("latency_ms_p99")
        add("max_latency_ms_p99", lat is not None and lat <= gate.max_latency_ms_p99, lat, gate.max_latency_ms_p99,
            f"p99 latency {_fmt(lat)} ms above the maximum {gate.max_latency_ms_p99} ms")
    if active is not None:
        tol = gate.max_regression
        who = active.get("model", "the active model")
        for key in HIGHER_IS_BETTER:
            new, old = candidate.get(key), active.get(key)
            if new is None or old is None:
                continue
            add(f"no_regression:{key}", new >= old - tol, new, old - tol,
                f"{key} {_fmt(new)} regresses against active model {who} ({_fmt(old)}, tolerance {tol})")
        new, old = candidate.get("false_reject_rate"), active.get("false_reject_rate")
        if new is not None and old is not None:
            add("no_regression:false_reject_rate", new <= old + tol, new, old + tol,
                f"false-reject rate {_fmt(new)} regresses against active model {who} ({_fmt(old)}, tolerance {tol})")
    reasons = [c["reason"] for c in checks if not c["passed"]]
    return GateResult(not reasons, reasons, checks)
