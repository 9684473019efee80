"""The X-ray part of a calibration profile: limits, the reference region, the baseline.

Kept apart from :mod:`calibration.xray_spec` (which measures and checks) so the profile
schema can hold it without importing the checking code.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from calibration.roi import Roi


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class XrayTolerances(_Strict):
    """Pass limits of the X-ray capture checks. "fraction" values are of full scale."""

    grey_low: float = Field(0.2, ge=0, le=1, description="min mean grey level in the reference region")
    grey_high: float = Field(0.8, ge=0, le=1, description="max mean grey level in the reference region")
    snr_min: float = Field(20.0, ge=0, description="min signal-to-noise ratio in the reference region")
    saturation_level: float = Field(0.98, gt=0, le=1, description="a pixel at or above this is saturated")
    saturation_max: float = Field(0.01, ge=0, le=1, description="max share of ROI pixels saturated")
    underexposed_level: float = Field(0.05, ge=0, lt=1, description="a pixel below this is dead / underexposed")
    underexposed_max: float = Field(0.01, ge=0, le=1, description="max share of ROI pixels underexposed")
    position_max_px: float = Field(10.0, ge=0)
    rotation_max_deg: float = Field(1.0, ge=0)
    registration_min: float = Field(0.5, ge=-1, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> XrayTolerances:
        if self.grey_low >= self.grey_high:
            raise ValueError(f"grey_low ({self.grey_low}) must be below grey_high ({self.grey_high})")
        if self.underexposed_level >= self.saturation_level:
            raise ValueError("underexposed_level must be below saturation_level")
        return self


class XrayBaseline(_Strict):
    """What the good radiographs measured (mean, min, max per check)."""

    n_images: int = Field(ge=1)
    grey: tuple[float, float, float]
    snr: tuple[float, float, float]
    saturated: tuple[float, float, float]
    underexposed: tuple[float, float, float]
    position: tuple[float, float, float]


class XraySpec(_Strict):
    """The X-ray capture spec of a profile: its limits and where grey level and SNR are measured."""

    tolerances: XrayTolerances = XrayTolerances()
    reference_region: Roi = Field(description="x, y, width, height in reference pixels (flat material)")
    baseline: XrayBaseline | None = None
