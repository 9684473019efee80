"""A synthetic inspected part with controllable capture faults.

Used by the calibration tests, ``bench/spec_checks.py`` and (later) the wizard's demo mode,
so they need no camera. The part is a textured plate with holes, slots and bright pads on
a darker, unevenly lit background; the same ``part_seed`` always gives the same part.

Faults follow the physics order so each one touches only what it would on a real line:
pose (fixture) -> lighting/exposure (gain, contrast) -> optics (blur) -> sensor (noise,
quantisation, clipping). Levels are in fractions of full scale, so the same scene renders
as Mono8, Mono12-in-uint16 or Mono16.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BACKGROUND = 0.20
PLATE = 0.55
HOLE = 0.10
PAD = 0.75
TEXTURE = 0.08  # amplitude of the plate's surface texture


@dataclass(frozen=True)
class Capture:
    """How one frame of the part is taken (defaults: a good frame)."""

    dx: float = 0.0  # part shift in the frame, px (right/down positive)
    dy: float = 0.0
    angle_deg: float = 0.0  # part rotation about the image centre, counter-clockwise positive
    gain: float = 1.0  # exposure x illumination (1 = as calibrated)
    contrast: float = 1.0  # <1 washes the image out towards the part's mean level (haze, flare)
    blur_sigma: float = 0.0  # defocus, px
    noise: float = 0.006  # sensor noise sigma, fraction of full scale
    seed: int = 0  # noise seed


def render_scene(shape: tuple[int, int] = (1024, 1280), part_seed: int = 7) -> np.ndarray:
    """The noise-free part at its nominal pose, float32 in fractions of full scale."""
    h, w = shape
    s = min(h, w) / 1024.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Uneven illumination: a gentle gradient across the field.
    img = BACKGROUND * (0.9 + 0.2 * xx / w) * (0.95 + 0.1 * yy / h)
    mask = np.zeros((h, w), np.uint8)
    cx, cy = w // 2, h // 2
    pw, ph = int(700 * s), int(560 * s)
    cv2.rectangle(mask, (cx - pw // 2, cy - ph // 2), (cx + pw // 2, cy + ph // 2), 255, -1, cv2.LINE_AA)
    rng = np.random.default_rng(part_seed)
    texture = rng.normal(0, 1, (h // 8 + 1, w // 8 + 1)).astype(np.float32)
    texture = cv2.resize(texture, (w, h), interpolation=cv2.INTER_CUBIC)[:h, :w]
    texture = cv2.GaussianBlur(texture, (0, 0), 4 * s)
    texture *= TEXTURE / (texture.std() + 1e-9)
    m = mask.astype(np.float32) / 255
    img = img * (1 - m) + (PLATE + texture) * m
    layer = np.zeros((h, w), np.float32)
    for i in range(6):  # holes
        x = int(cx - pw / 2 + pw * (i % 3 + 0.5) / 3)
        y = int(cy - ph / 4 if i < 3 else cy + ph / 4)
        cv2.circle(layer, (x, y), int((28 + 9 * i) * s), 1.0, -1, cv2.LINE_AA)
    slot = ((cx - int(250 * s), cy - int(12 * s)), (cx + int(120 * s), cy + int(12 * s)))
    cv2.rectangle(layer, *slot, 1.0, -1, cv2.LINE_AA)
    img = img * (1 - layer) + HOLE * layer
    pads = np.zeros((h, w), np.float32)
    for i in range(4):
        x = cx + int((160 + 40 * i) * s)
        cv2.rectangle(pads, (x, cy - int(20 * s)), (x + int(24 * s), cy + int(20 * s)), 1.0, -1, cv2.LINE_AA)
    origin = (cx - int(300 * s), cy + int(200 * s))
    cv2.putText(pads, "LS-42", origin, cv2.FONT_HERSHEY_SIMPLEX, 2.2 * s, 1.0, max(1, int(5 * s)), cv2.LINE_AA)
    img = img * (1 - pads) + PAD * pads
    return cv2.GaussianBlur(img, (0, 0), 0.7 * s)  # the lens is never perfectly sharp


def pose_matrix(shape: tuple[int, int], dx: float, dy: float, angle_deg: float) -> np.ndarray:
    """2x3 map from nominal (reference) coordinates to frame coordinates."""
    h, w = shape
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle_deg, 1.0)
    m[:, 2] += (dx, dy)
    return m


def capture(
    scene: np.ndarray,
    cap: Capture = Capture(),
    *,
    bit_depth: int = 8,
    dtype: type | None = None,
    bgr: bool = False,
) -> np.ndarray:
    """Render one frame of ``scene`` as the camera would deliver it."""
    h, w = scene.shape
    img = scene
    if cap.dx or cap.dy or cap.angle_deg:
        m = pose_matrix((h, w), cap.dx, cap.dy, cap.angle_deg)
        img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    img = img * cap.gain
    if cap.contrast != 1.0:
        mean = float(img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].mean())
        img = mean + (img - mean) * cap.contrast
    if cap.blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), cap.blur_sigma)
    if cap.noise > 0:
        img = img + np.random.default_rng(cap.seed).normal(0, cap.noise, img.shape).astype(np.float32)
    full_scale = (1 << bit_depth) - 1
    dtype = dtype or (np.uint8 if bit_depth <= 8 else np.uint16)
    out = np.clip(np.rint(img * full_scale), 0, full_scale).astype(dtype)
    if bgr:
        tint = np.array([0.9, 1.0, 1.1])  # a slightly warm light, so the channels differ
        out = np.clip(out[..., None] * tint, 0, full_scale).astype(dtype)
    return out


def good_captures(n: int, *, jitter_px: float = 1.5, jitter_deg: float = 0.15, seed: int = 100) -> list[Capture]:
    """``n`` good frames: the part sits in its fixture with a little play."""
    rng = np.random.default_rng(seed)
    return [
        Capture(
            dx=float(rng.uniform(-jitter_px, jitter_px)),
            dy=float(rng.uniform(-jitter_px, jitter_px)),
            angle_deg=float(rng.uniform(-jitter_deg, jitter_deg)),
            gain=float(rng.uniform(0.98, 1.02)),
            seed=seed + i,
        )
        for i in range(n)
    ]
