"""Decision routing: from a spec report and a detector result to what happens to the part.

The vocabulary maps onto OPC 40001-101's result states so MES and PLC consumers can use it
directly: pass -> OK, reject -> NotOK, review and check_capture -> NotDecidable.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from station.detect.base import DetectionResult


class Decision(str, enum.Enum):
    PASS = "pass"  # accept the part
    REJECT = "reject"  # confident defect: reject / hold, alert
    REVIEW = "review"  # borderline: the supervisor's review queue decides
    CHECK_CAPTURE = "check_capture"  # the capture itself is bad: no verdict on the part

    @property
    def verdict(self) -> str:
        return {"pass": "OK", "reject": "NotOK"}.get(self.value, "NotDecidable")

    @property
    def operator_text(self) -> str:
        return {"pass": "GOOD", "reject": "DEFECT", "review": "REVIEW",
                "check_capture": "CHECK CAPTURE"}[self.value]


@dataclass(frozen=True)
class DecisionPolicy:
    """Per-recipe confidence thresholds.

    A defect call is acted on only when the model is sure enough (``reject_min_confidence``);
    a good call passes only when sure enough (``pass_min_confidence``); everything in
    between - scores close to the threshold on either side - goes to human review.
    """

    reject_min_confidence: float = 0.75
    pass_min_confidence: float = 0.6

    def decide(self, spec_passed: bool, result: DetectionResult | None) -> tuple[Decision, str]:
        """Return the decision and a one-line reason a person can read."""
        if not spec_passed:
            return Decision.CHECK_CAPTURE, "capture outside its spec"
        if result is None:
            return Decision.CHECK_CAPTURE, "no detector result"
        conf = result.confidence
        if result.is_anomalous:
            if conf >= self.reject_min_confidence:
                return Decision.REJECT, f"anomalous, confidence {conf:.2f} >= {self.reject_min_confidence:.2f}"
            return Decision.REVIEW, f"anomalous but confidence {conf:.2f} < {self.reject_min_confidence:.2f}"
        if conf >= self.pass_min_confidence:
            return Decision.PASS, f"normal, confidence {conf:.2f} >= {self.pass_min_confidence:.2f}"
        return Decision.REVIEW, f"normal but confidence {conf:.2f} < {self.pass_min_confidence:.2f}"
