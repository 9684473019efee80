"""Window / level for showing 16-bit (X-ray) images on an 8-bit screen (Qt-free).

A :class:`GreyWindow` ``(low, high)`` maps grey ``low`` and below to black, ``high`` and
above to white and the values between linearly onto 0..255. Radiology describes the same
window by its level (centre) and width; both views are offered because the operator drags
level and width while recipes write presets as ``low``/``high``.

:func:`apply_window` is what the screens call on every new frame and every drag step, so
it must stay cheap: OpenCV's saturating subtract followed by ``convertScaleAbs`` maps a
1280x1024 uint16 frame in well under a millisecond, several times faster than a 65536-entry
``numpy.take`` lookup table (``bench/window_level.py`` measures both). ``cv2.LUT`` itself
only takes 8-bit input, so it cannot do this mapping. :func:`window_lut` is the same map
as a table, built through the same code, for callers that want one.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from station.detect.grey_window import GreyWindow  # the one window class (model and screens)

# Significant bits per pixel format: a Mono12 frame lives in a uint16 array but its
# white is 4095, and a window reset must not squeeze it into the bottom sixteenth.
FORMAT_TOP = {"Mono8": 255, "BGR8": 255, "Mono10": 1023, "Mono12": 4095, "Mono14": 16383, "Mono16": 65535}
AUTO_PERCENTILES = (0.5, 99.5)
AUTO_SAMPLES = 250_000  # pixels the auto window looks at (a strided subsample of bigger frames)


def top_of(image: np.ndarray, pixel_format: str | None = None) -> int:
    """The brightest value ``image`` can hold: by pixel format when known, else by dtype."""
    if pixel_format in FORMAT_TOP and image.dtype == np.uint16:
        return FORMAT_TOP[pixel_format]
    if image.dtype == np.uint8:
        return 255
    if image.dtype == np.uint16:
        return 65535
    raise ValueError(f"window / level needs uint8 or uint16 images, not {image.dtype}")


def full_window(top: int) -> GreyWindow:
    return GreyWindow(0, int(top))


def fit_window(window: GreyWindow, top: int) -> GreyWindow:
    """``window`` inside ``0..top``: a 16-bit preset on a 12-bit frame keeps its level and
    as much of its width as fits, rather than running past the frame's white."""
    if window.high <= top:
        return window
    return GreyWindow.from_level_width(window.level, window.width, top)


def default_window(presets: Sequence[GreyWindow], top: int, grey_window: GreyWindow | None = None) -> GreyWindow:
    """What a 16-bit frame is shown through until the operator changes it (live view, review,
    results strip - all of them, so a part looks the same everywhere): the recipe's first
    display preset, else its grey window (what the model sees), else the frame's full range."""
    chosen = presets[0] if presets else grey_window
    return fit_window(chosen, top) if chosen is not None else full_window(top)


def to_8bit(image: np.ndarray, window: GreyWindow | None, top: int | None = None) -> np.ndarray:
    """``image`` as 8 bits for a screen: uint8 as it is; one-channel uint16 through ``window``
    (None: the full range up to ``top``, by dtype when not given); 16-bit colour by scale."""
    if image.dtype == np.uint8:
        return image
    if image.dtype != np.uint16:
        raise ValueError(f"can only show uint8 or uint16 images, not {image.dtype}")
    if image.ndim == 2:
        return apply_window(image, window if window is not None else full_window(top or 65535))
    return cv2.convertScaleAbs(image, alpha=255.0 / float(top or 65535))


def apply_window(image: np.ndarray, window: GreyWindow) -> np.ndarray:
    """``image`` (uint8 / uint16, one channel) mapped through ``window`` to a new uint8 array."""
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"window / level needs uint8 or uint16 images, not {image.dtype}")
    if image.ndim != 2:
        raise ValueError(f"window / level needs a one-channel image, got shape {image.shape}")
    shifted = cv2.subtract(image, window.low) if window.low else image  # saturates at 0
    return cv2.convertScaleAbs(shifted, alpha=255.0 / window.width)  # rounds, saturates at 255


def window_lut(window: GreyWindow, top: int = 65535) -> np.ndarray:
    """The map as a ``top + 1`` entry uint8 table (exactly what :func:`apply_window` does)."""
    dtype = np.uint8 if top <= 255 else np.uint16
    return apply_window(np.arange(top + 1, dtype=dtype).reshape(1, -1), window).reshape(-1)


def auto_window(image: np.ndarray, top: int | None = None,
                percentiles: tuple[float, float] = AUTO_PERCENTILES) -> GreyWindow:
    """A window from the frame's own grey levels: its 0.5th to 99.5th percentile.

    Big frames are subsampled on a regular grid (a few hundred thousand pixels settle the
    percentiles to within a grey level or two, at a fraction of the cost).
    """
    top = top_of(image) if top is None else int(top)
    img = image
    if img.ndim != 2:
        raise ValueError(f"window / level needs a one-channel image, got shape {img.shape}")
    step = max(1, int(np.sqrt(img.size / AUTO_SAMPLES)))
    sample = img[::step, ::step]
    counts = np.bincount(sample.ravel(), minlength=top + 1)
    cum = np.cumsum(counts)
    n = int(cum[-1])
    low = int(np.searchsorted(cum, n * percentiles[0] / 100.0, side="right"))
    high = int(np.searchsorted(cum, n * percentiles[1] / 100.0, side="left"))
    low, high = min(low, top), min(high, top)
    if high <= low:  # a flat frame: centre a narrow window on it
        return GreyWindow.from_level_width(low, max(2, top // 256), top)
    return GreyWindow(low, high)


@dataclass(frozen=True)
class DragGain:
    """How far a drag moves the window: dragging across the whole view = the whole range."""

    view_width_px: int
    view_height_px: int
    top: int

    def dragged(self, start: GreyWindow, dx_px: float, dy_px: float) -> GreyWindow:
        """``start`` after a drag of (``dx``, ``dy``) screen pixels (y grows downwards).

        Horizontal moves the level (right = higher level = darker picture); vertical the
        width (up = wider = softer contrast, down = narrower = harder).
        """
        per_x = self.top / max(1, self.view_width_px)
        per_y = self.top / max(1, self.view_height_px)
        return GreyWindow.from_level_width(start.level + dx_px * per_x, start.width - dy_px * per_y, self.top)


def fine_step(top: int) -> int:
    """One wheel notch / arrow key: a thousandth of the range (65 grey levels at 16 bits)."""
    return max(1, round(top / 1000))
