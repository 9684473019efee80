"""The detector seam: what every anomaly model returns and the interface it implements.

The result mirrors Amazon Lookout for Vision's ``DetectAnomalyResult`` (which the
SageMaker "Computer Vision Defect Detection Model" also returns), so downstream consumers
of the old cloud design keep working, plus what a plant needs beside it: the raw score,
the threshold, the model identity and a heatmap.
"""
from __future__ import annotations

import abc
import base64
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import cv2
import numpy as np

from calibration.roi import Roi

# Lookout for Vision reports the whole-image "background" class first, then one entry per
# anomaly label; each has a display colour used in the AnomalyMask.
BACKGROUND = "background"
ANOMALY_COLORS = {BACKGROUND: "#FFFFFF", "anomaly": "#FF0000"}


@dataclass(frozen=True)
class Anomaly:
    name: str
    total_percentage_area: float  # fraction of the image, 0..1 (as Lookout for Vision)
    color: str = "#FF0000"


@dataclass
class DetectionResult:
    """One detector verdict on one image."""

    is_anomalous: bool
    confidence: float  # confidence in ``is_anomalous``, 0.5 (at threshold) .. 1
    score: float  # raw image anomaly score (model units)
    threshold: float  # score above which the model calls the image anomalous
    anomalies: list[Anomaly]
    model_id: str
    model_version: str
    model_hash: str = ""
    anomaly_mask: np.ndarray | None = None  # uint8 HxW, 255 where anomalous
    heatmap: np.ndarray | None = None  # float32 HxW in 0..1 (1 = threshold x2 or more)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_lfv(self, include_mask: bool = False) -> dict[str, Any]:
        """The ``DetectAnomalyResult`` JSON shape (AnomalyMask as base64 PNG if asked)."""
        mask_b64 = None
        if include_mask and self.anomaly_mask is not None:
            ok, png = cv2.imencode(".png", self.anomaly_mask)
            if ok:
                mask_b64 = base64.b64encode(png.tobytes()).decode("ascii")
        return {
            "Source": {"Type": "direct"},
            "IsAnomalous": bool(self.is_anomalous),
            "Confidence": round(float(self.confidence), 6),
            "Anomalies": [
                {
                    "Name": a.name,
                    "PixelAnomaly": {
                        "TotalPercentageArea": round(float(a.total_percentage_area), 6),
                        "Color": a.color,
                    },
                }
                for a in self.anomalies
            ],
            "AnomalyMask": mask_b64,
        }

    def to_json(self, include_mask: bool = False) -> dict[str, Any]:
        """The LfV shape plus LineStation's own fields."""
        return {
            "DetectAnomalyResult": self.to_lfv(include_mask=include_mask),
            "score": float(self.score),
            "threshold": float(self.threshold),
            "model_id": self.model_id,
            "model_version": self.model_version,
            "model_hash": self.model_hash,
            **self.extra,
        }


class ParamsMixin:
    """``to_dict`` / ``from_dict`` for a model's parameter dataclass (unknown keys refused)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")
        return cls(**data)


def confidence_from_score(score: float, threshold: float, scale: float = 1.0) -> float:
    """Map a score to the confidence of the binary call it implies.

    At the threshold the model is undecided (0.5); the farther the score lies from the
    threshold, relative to the threshold, the closer the confidence gets to 1. ``scale``
    sets how fast: at a relative margin of ``scale`` the confidence is ~0.88.
    """
    if threshold <= 0 or not math.isfinite(score):
        return 1.0
    margin = abs(score - threshold) / threshold
    return 0.5 + 0.5 * math.tanh(margin / max(scale, 1e-9))


def confidence_scale(threshold: float, training: dict | None) -> float:
    """The relative margin at which a model is "fairly sure" (confidence ~0.88).

    It is the distance from the threshold down to the model's mean held-out good score,
    relative to the threshold: a typical good part then gets ~0.88 whatever the model's
    units, and a defect scoring as far above the threshold as good parts sit below it
    gets the same. Without training statistics, 1.0 (a score of 0 or 2x the threshold).
    """
    try:
        mean = float((training or {})["good_scores"]["mean"])
    except (KeyError, TypeError, ValueError):
        return 1.0
    if threshold <= 0 or not math.isfinite(mean) or not 0 <= mean < threshold:
        return 1.0
    return max((threshold - mean) / threshold, 0.05)


def anomalies_from_mask(mask: np.ndarray, label: str = "anomaly") -> list[Anomaly]:
    """Lookout for Vision lists the background share first, then each anomaly label."""
    frac = float(np.count_nonzero(mask)) / float(mask.size) if mask.size else 0.0
    out = [Anomaly(BACKGROUND, 1.0 - frac, ANOMALY_COLORS[BACKGROUND])]
    if frac > 0:
        out.append(Anomaly(label, frac, ANOMALY_COLORS.get(label, "#FF0000")))
    return out


class Detector(abc.ABC):
    """An anomaly model ready for inference."""

    model_id: str
    model_version: str
    model_hash: str
    model_type: str

    @abc.abstractmethod
    def detect(
        self,
        image: np.ndarray,
        *,
        roi: Roi | None = None,
        alignment: np.ndarray | None = None,
    ) -> DetectionResult:
        """Score one image.

        ``alignment`` is the 2x3 affine that maps frame pixel coordinates onto the
        calibration reference (from the registration spec check); models trained on
        aligned images warp the frame with it first. ``roi`` is in reference coordinates.
        """
