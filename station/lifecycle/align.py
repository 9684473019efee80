"""Registering dataset images to a calibration reference, as the live cycle does.

A model trained on registered frames (the station's own models: the cycle hands every
detector the frame -> reference affine from the registration spec check) must be trained
and evaluated on registered images too, or its scores mean something else offline than
on the line. The calibration profile is named in the model's lineage (``calibration``:
the profile label, e.g. ``"SIM-0001/demo@v3#1f2e3d4c5b6a"``).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from calibration.profile import CalibrationProfile, ProfileError, ProfileStore
from calibration.spec import check_frame

Aligner = Callable[[np.ndarray], "np.ndarray | None"]
_LABEL_RE = re.compile(r"^(?P<serial>[^/]+)/(?P<recipe>[^@]+)@v(?P<version>\d+)(?:#(?P<hash>[0-9a-f]+))?$")


class AlignError(ValueError):
    """The calibration profile named for registration cannot be used."""


def load_profile(data_dir: Path | str, label: str) -> CalibrationProfile:
    """The profile ``SERIAL/RECIPE@vN[#hash]`` from ``<data_dir>/calibration`` (hash checked if given)."""
    m = _LABEL_RE.match(label or "")
    if not m:
        raise AlignError(f"bad calibration label {label!r}: expected SERIAL/RECIPE@vN")
    try:
        profile = ProfileStore(Path(data_dir) / "calibration").load(m["serial"], m["recipe"], int(m["version"]))
    except (ProfileError, OSError) as e:
        raise AlignError(f"calibration profile {label}: {e}") from e
    if m["hash"] and not profile.content_hash.startswith(m["hash"]):
        raise AlignError(f"calibration profile {label}: content hash is now {profile.content_hash[:12]}")
    return profile


def aligner_from_profile(profile: CalibrationProfile) -> Aligner:
    """image -> its frame -> reference affine (None when the part is not found)."""
    def align(image: np.ndarray) -> np.ndarray | None:
        report = check_frame(profile, image)
        reg = report.registration
        return report.alignment if reg is not None and reg.quality >= profile.tolerances.registration_min else None
    return align


def aligner_for_model(meta: dict[str, Any], data_dir: Path | str) -> Aligner | None:
    """The aligner a model's lineage asks for (None: the model was trained unregistered)."""
    label = (meta.get("dataset") or {}).get("calibration")
    return aligner_from_profile(load_profile(data_dir, label)) if label else None
