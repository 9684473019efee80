"""Small image helpers for the screens, run on the line thread (Qt-free)."""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from station.display_window import FORMAT_TOP, GreyWindow, to_8bit, top_of
from station.ui.line_view import shown_window

OVERLAY_MAX_SIDE = 640
OVERLAY_FLOOR = 0.3  # below this heat (0.5 = the model's threshold) nothing is tinted
THUMB_WIDTH = 192


def thumbnail(image: np.ndarray, width: int = THUMB_WIDTH, *, window: GreyWindow | None = None,
              top: int | None = None) -> np.ndarray:
    """A small 8-bit copy for the results strip (made on the line thread, not the GUI's).

    A 16-bit frame goes through ``window``, the one its live view opens with
    (:func:`station.display_window.default_window`): scaled by bit depth instead, an X-ray
    part whose grey levels fill a tenth of the range is a flat dark tile.
    """
    img = to_8bit(image, window, top)
    h, w = img.shape[:2]
    size = (width, max(1, round(h * width / w)))
    return np.ascontiguousarray(cv2.resize(img, size, interpolation=cv2.INTER_AREA))


def result_thumbnail(cfg: Any, image: np.ndarray, recipe: str | None, *, pixel_format: str | None = None,
                     bit_depth: int | None = None, width: int = THUMB_WIDTH) -> np.ndarray:
    """The strip's thumbnail of one result: a 16-bit mono frame through the window its recipe's
    live view opens with. The frame's white comes from its pixel format, else the stored bit
    depth (a Mono12 image read back from its PNG), else its dtype."""
    if image.dtype == np.uint16 and image.ndim == 2:
        if pixel_format not in FORMAT_TOP and bit_depth:
            pixel_format = f"Mono{bit_depth}"
        top = top_of(image, pixel_format)
        return thumbnail(image, width, window=shown_window(cfg, recipe, top), top=top)
    return thumbnail(image, width)


def heat_overlay(heatmap: np.ndarray, max_side: int = OVERLAY_MAX_SIDE) -> np.ndarray:
    """RGBA (uint8) tint for a 0..1 heatmap: transparent where normal, opaque toward hot.

    Made once per result at most ``max_side`` px and scaled onto the frame when painted.
    """
    h = np.asarray(heatmap, dtype=np.float32)
    side = max(h.shape[:2])
    if side > max_side:
        s = max_side / side
        h = cv2.resize(h, (max(1, round(h.shape[1] * s)), max(1, round(h.shape[0] * s))),
                       interpolation=cv2.INTER_AREA)
    u8 = np.clip(h * 255.0, 0, 255).astype(np.uint8)
    bgr = cv2.applyColorMap(u8, cv2.COLORMAP_INFERNO)
    rgba = np.empty(u8.shape + (4,), np.uint8)
    rgba[..., 0] = bgr[..., 2]
    rgba[..., 1] = bgr[..., 1]
    rgba[..., 2] = bgr[..., 0]
    alpha = np.clip((h - OVERLAY_FLOOR) / (1.0 - OVERLAY_FLOOR), 0, 1) * 200.0
    rgba[..., 3] = alpha.astype(np.uint8)
    # a white ring round what the model calls anomalous (0.5 = its threshold): a small
    # defect stays visible from two metres, and the ring needs no colour vision
    hot = (h >= 0.5).astype(np.uint8)
    if hot.any():
        pad = max(3, round(max(h.shape) / 60))  # ring drawn clear of the defect, not on it
        hot = cv2.dilate(hot, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pad + 1, 2 * pad + 1)))
        contours, _ = cv2.findContours(hot, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        ring = max(2, round(max(h.shape) / 160))
        cv2.drawContours(rgba, contours, -1, (255, 255, 255, 255), ring + 2)
        cv2.drawContours(rgba, contours, -1, (0, 0, 0, 255), max(1, ring // 2))
    return rgba
