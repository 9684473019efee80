"""The recipe's grey-level window: which 16-bit grey levels the anomaly model looks at.

An X-ray radiograph spends most of its 16 bits on grey levels nobody inspects (open beam,
the thickest section); the defect contrast sits in a narrow band of the material of
interest. ``recipe.grey_window: {low, high}`` maps that band onto the model's whole input
range: ``low`` -> 0, ``high`` -> 65535 (the model then scales by 16 bits to 0..1), values
outside clipped. Without a window a 16-bit frame is scaled by its bit depth (Mono12 /4095,
Mono16 /65535), as every detector does.

The window is applied by :class:`WindowedDetector` around any model, the same way at
training and at inference, so the model never sees unwindowed images. What is stored and
what the spec checks measure stay the raw 16-bit frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calibration.roi import Roi
from station.detect.base import DetectionResult, Detector


@dataclass(frozen=True)
class GreyWindow:
    """Grey values ``low`` .. ``high`` (``low < high``): what the model sees (:meth:`apply`)
    and what the screens show black .. white (:mod:`station.display_window`). One class, so
    a recipe's window means the same to both; Qt-free."""

    low: int
    high: int
    _luts: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.low, (int, np.integer)) and isinstance(self.high, (int, np.integer))):
            raise TypeError(f"window bounds must be integers, got {self.low!r}, {self.high!r}")
        if not (0 <= self.low < self.high <= 65535):
            raise ValueError(f"grey window needs 0 <= low < high <= 65535, got {self.low}..{self.high}")

    @property
    def width(self) -> int:
        return self.high - self.low

    @property
    def level(self) -> float:
        return (self.low + self.high) / 2.0

    @classmethod
    def from_level_width(cls, level: float, width: float, top: int) -> GreyWindow:
        """The window centred on ``level``, ``width`` wide, kept inside 0..``top``.

        A window pushed past an end keeps its width and slides back (the operator sees the
        contrast they chose); one wider than the whole range becomes the whole range.
        """
        w = int(round(min(max(width, 1.0), float(top))))
        low = int(round(level - w / 2.0))
        low = min(max(low, 0), top - w)
        return cls(low, low + w)

    def text(self) -> str:
        """How the screens show it: ``W 2000  L 3000`` (width and level, whole numbers)."""
        return f"W {self.width}  L {self.level:.0f}"

    def _lut(self, dtype: np.dtype) -> np.ndarray:
        lut = self._luts.get(dtype)
        if lut is None:
            levels = np.arange(np.iinfo(dtype).max + 1, dtype=np.float64)
            scaled = (levels - self.low) * (65535.0 / (self.high - self.low))
            lut = self._luts[dtype] = np.clip(np.rint(scaled), 0, 65535).astype(np.uint16)
        return lut

    def apply(self, image: np.ndarray) -> np.ndarray:
        """``image`` (uint8/uint16) with ``low..high`` stretched over uint16's 0..65535."""
        if image.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"a grey window applies to uint8/uint16 images, got {image.dtype}")
        return self._lut(image.dtype)[image]

    def to_json(self) -> list[int]:
        return [self.low, self.high]


class WindowedDetector(Detector):
    """Any detector, fed the windowed image (its other attributes are the inner model's)."""

    def __init__(self, inner: Detector, window: GreyWindow) -> None:
        self.inner = inner
        self.window = window

    def __getattr__(self, name: str) -> Any:  # model_id, model_version, model_hash, threshold, ...
        if name in ("inner", "window"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def detect(self, image: np.ndarray, *, roi: Roi | None = None,
               alignment: np.ndarray | None = None) -> DetectionResult:
        result = self.inner.detect(self.window.apply(image), roi=roi, alignment=alignment)
        result.extra["grey_window"] = self.window.to_json()
        return result
