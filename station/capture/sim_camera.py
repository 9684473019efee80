"""The simulated twin: a camera that photographs the same machined plate over and over.

Every grab is a pure function of ``(seed, index)``: the part's position jitter, whether it
carries a defect (and where), which capture fault hits it and the sensor noise all come
from a generator seeded with both, so the n-th grab is identical on every run, whatever the
timing. ``Frame.meta["sim"]`` carries the ground truth for tests, demos and evaluation.

Speed comes from doing the expensive work once: the plate is rendered per (size, format)
and cached, with a lazily built bank of slightly rotated copies. A grab picks the nearest
rotation (0.1 degree steps), shifts it by the exact sub-pixel jitter with two bilinear
``addWeighted`` passes, draws a defect on a small patch, and applies exposure, gain and a
slice of a pre-computed noise bank in one more ``addWeighted`` (about 1 ms for 1280x1024
Mono8). Big moves (the "offset" fault) use one exact ``warpAffine`` of the whole frame.
"""
from __future__ import annotations

import functools
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from station.capture.base import (
    CameraConfigError,
    CameraDriver,
    CameraInfo,
    CaptureTimeout,
    Frame,
    TriggerMode,
)

DEFECT_KINDS = ("scratch", "spot", "missing_feature", "contamination")
FAULTS = ("dim", "overexposed", "blur", "offset", "dropped")
PIXEL_FORMATS = ("Mono8", "Mono12", "Mono16", "BGR8")
FULL_SCALE = {"Mono8": 255, "BGR8": 255, "Mono12": 4095, "Mono16": 65535}
NOMINAL_EXPOSURE_US = 5000.0  # the exposure the part is rendered for (plate at ~60 % of full scale)

_LIGHT = np.array([-0.6, -0.8], np.float32)  # towards the ring light: up and to the left
_NOISE_SIGMA_8BIT = 1.0  # read noise in 8-bit DN, scaled with the full scale of the format
_NOISE_FIELDS = 4
_NOISE_PAD = 32
_FAULT_GAIN = {"dim": 0.22, "overexposed": 3.2}
# Rotation jitter is quantised to _ANGLE_STEP degrees (bank built lazily up to +-_ANGLE_LIMIT
# steps); position jitter up to _SHIFT_PAD px stays exact. Beyond either: one exact warp.
_ANGLE_STEP = 0.1
_ANGLE_LIMIT = 15  # steps
_SHIFT_PAD = 8  # px


# --- the part ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Scene:
    """Everything pre-rendered for one (width, height, pixel format)."""

    base: np.ndarray  # the part at nominal exposure, in the output dtype
    plain: np.ndarray  # the same part with the removable holes not drilled
    noise: np.ndarray  # (_NOISE_FIELDS, H + 2 pad, W + 2 pad[, 3]) noise + noise_offset
    noise_offset: int
    surface_points: np.ndarray  # (N, 2) x, y on flat plate surface, where defects may go
    holes: tuple[tuple[float, float, float], ...]  # removable holes: x, y, radius
    scale: float
    _rotated: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def rotation_matrix(self, deg: float, pad: int = 0) -> np.ndarray:
        h, w = self.base.shape[:2]
        m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(deg), 1.0)
        m[:, 2] += pad
        return m

    def rotated(self, step: int) -> np.ndarray:
        """The part turned by ``step * _ANGLE_STEP`` degrees, padded by ``_SHIFT_PAD`` on each side.

        Built on first use and kept: a grab then only has to shift it, not warp it.
        """
        with self._lock:
            img = self._rotated.get(step)
            if img is None:
                h, w = self.base.shape[:2]
                img = cv2.warpAffine(self.base, self.rotation_matrix(step * _ANGLE_STEP, _SHIFT_PAD),
                                     (w + 2 * _SHIFT_PAD, h + 2 * _SHIFT_PAD), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT_101)
                img.flags.writeable = False
                self._rotated[step] = img
            return img


def _aa_mask(h: int, w: int, draw) -> np.ndarray:
    """A float32 0..1 mask of what ``draw(uint8 image)`` paints (anti-aliased, value 255)."""
    m = np.zeros((h, w), np.uint8)
    draw(m)
    return m.astype(np.float32) / 255.0


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x * 16)), int(round(y * 16))  # cv2 drawing with shift=4


def _circle(img, x, y, r, value=255):
    cv2.circle(img, _pt(x, y), int(round(r * 16)), value, -1, cv2.LINE_AA, 4)


def _poly(img, pts, value=255):
    p = np.round(np.asarray(pts, np.float64) * 16).astype(np.int32)
    cv2.fillPoly(img, [p], value, cv2.LINE_AA, 4)


def _rounded_rect(cx, cy, hw, hh, r, cut_tr=0.0, n=10):
    """Outline of a rounded rectangle; ``cut_tr`` cuts the top-right corner at 45 degrees."""
    pts = []
    corners = [(cx + hw - r, cy + hh - r, 0), (cx - hw + r, cy + hh - r, 90),
               (cx - hw + r, cy - hh + r, 180), (cx + hw - r, cy - hh + r, 270)]
    for qx, qy, a0 in corners:
        if a0 == 270 and cut_tr > 0:
            pts += [(cx + hw - cut_tr, cy - hh), (cx + hw, cy - hh + cut_tr)]
            continue
        for a in np.linspace(np.radians(a0), np.radians(a0 + 90), n):
            pts.append((qx + r * np.cos(a), qy + r * np.sin(a)))
    return pts


def _obround(x0, x1, y, r, n=12):
    pts = [(x1 + r * np.cos(a), y + r * np.sin(a)) for a in np.linspace(-np.pi / 2, np.pi / 2, n)]
    pts += [(x0 + r * np.cos(a), y + r * np.sin(a)) for a in np.linspace(np.pi / 2, 1.5 * np.pi, n)]
    return pts


def _edge_shading(solid: np.ndarray, width: float, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """Lambert-ish shading of a chamfer band ``width`` px wide along the edges of ``solid``.

    Returns (shade factor, band weight). The band's outward normal tilts the surface: faces
    turned towards the light get brighter, the others darker.
    """
    d = cv2.distanceTransform((solid > 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    smooth = cv2.GaussianBlur(solid, (0, 0), max(width * 0.5, 1.0))
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx * gx + gy * gy) + 1e-6
    facing = -(gx * _LIGHT[0] + gy * _LIGHT[1]) / mag  # outward normal . light
    band = np.clip(width + 0.5 - d, 0.0, 1.0) * (solid > 0.5)
    return 1.0 + strength * band * facing, band


def _smooth_noise(rng, h, w, cell: float) -> np.ndarray:
    """Zero-mean, unit-std low-frequency noise with features about ``cell`` px large."""
    small = rng.standard_normal((max(2, int(h / cell)), max(2, int(w / cell)))).astype(np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return (big - big.mean()) / (big.std() + 1e-6)


def _render_radiance(w: int, h: int, colour: bool, drilled: bool):
    """The part as relative radiance 0..1 (HxW or HxWx3), plus where defects may go."""
    s = min(w / 1280.0, h / 1024.0)
    cx, cy = w / 2.0, h / 2.0
    rng = np.random.default_rng(20240917)  # the part's texture never changes

    def at(x, y):
        return cx + x * s, cy + y * s

    outline_pts = [at(x, y) for x, y in _rounded_rect(0, 0, 460, 350, 34, cut_tr=80)]
    corner_holes = [(*at(x, y), 24 * s) for x, y in ((-395, -285), (395, 285), (-395, 285), (385, -270))]
    bore_c = at(-120, 0)
    bolt_holes = [(*at(-120 + 150 * np.cos(a), 150 * np.sin(a)), 11 * s)
                  for a in np.radians(np.arange(0, 360, 60) + 30)]
    removable = tuple(bolt_holes + corner_holes)

    outline = _aa_mask(h, w, lambda m: _poly(m, outline_pts))

    def draw_through(m):
        _circle(m, *bore_c, 70 * s)
        _poly(m, [at(x, y) for x, y in _obround(160, 330, 200, 24)])
        if drilled:
            for x, y, r in removable:
                _circle(m, x, y, r)

    through = _aa_mask(h, w, draw_through)
    solid = np.clip(outline - through, 0.0, 1.0)

    counterbore = _aa_mask(h, w, lambda m: _circle(m, *bore_c, 104 * s))
    pocket = _aa_mask(h, w, lambda m: _poly(m, [at(x, y) for x, y in _rounded_rect(235, -55, 85, 58, 14)]))
    floor = np.clip(counterbore + pocket, 0.0, 1.0)

    # marking: laser-etched text and a data-matrix-like code
    def draw_marking(m):
        for text, (x, y), size in (("LS-4021  REV B", (-330, -250), 1.05), ("SN 000417  LOT 24-117", (-330, -205), 0.8)):
            cv2.putText(m, text, tuple(int(v) for v in at(x, y)), cv2.FONT_HERSHEY_SIMPLEX,
                        size * s, 255, max(1, int(round(2 * s))), cv2.LINE_AA)
        code = rng.random((14, 14)) < 0.5
        code[:, 0] = True
        code[-1, :] = True
        code[0, ::2] = True
        code[1::2, -1] = True
        x0, y0 = at(70, -300)
        cell = 6.5 * s
        for (i, j) in zip(*np.nonzero(code)):
            _poly(m, [(x0 + j * cell, y0 + i * cell), (x0 + (j + 1) * cell, y0 + i * cell),
                      (x0 + (j + 1) * cell, y0 + (i + 1) * cell), (x0 + j * cell, y0 + (i + 1) * cell)])

    marking = _aa_mask(h, w, draw_marking)

    # shading: chamfers on every through edge, shadowed/lit walls on recessed floors
    edge_shade, bevel = _edge_shading(solid, 6.0 * s, 0.55)
    floor_shade, _ = _edge_shading(floor, 4.0 * s, -0.45)
    d_edge = cv2.distanceTransform((solid > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    edge_line = 1.0 - 0.45 * np.clip(1.6 - d_edge, 0.0, 1.0) * (solid > 0.5)

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    brushed = cv2.blur(rng.standard_normal((h, w)).astype(np.float32), (int(41 * s) | 1, 1)) * np.sqrt(41 * s)
    grain = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 0.7)
    rb = np.sqrt((xx - bore_c[0]) ** 2 + (yy - bore_c[1]) ** 2)
    rings = np.cos(rb / (2.2 * s)) * counterbore
    mill = np.cos(np.sqrt((xx - at(600, -55)[0]) ** 2 + (yy - at(600, -55)[1]) ** 2) / (3.0 * s)) * pocket
    texture = 0.025 * brushed * (1 - floor) + 0.02 * grain + 0.025 * (rings + mill)
    relief = edge_shade * floor_shade * (1.0 - 0.12 * floor) * edge_line * (1.0 + texture)

    background = 0.12 * (1.0 + 0.1 * _smooth_noise(rng, h, w, 24 * s)) + 0.006 * grain
    shadow = cv2.GaussianBlur(np.roll(outline, (int(14 * s), int(10 * s)), (0, 1)), (0, 0), 9 * s)
    background = background * (1.0 - 0.4 * shadow) * (1.0 - 0.35 * np.clip(outline - solid, 0, 1))
    r2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / (cx * cx + cy * cy)
    light = (1.0 - 0.14 * r2 - 0.05 * ((xx - cx) / w + (yy - cy) / h)).astype(np.float32)

    if colour:  # blue anodised plate; machined chamfers and laser marking show bare aluminium
        anod = np.array([0.72, 0.43, 0.17], np.float32)
        bare = np.array([0.80, 0.80, 0.82], np.float32)
        chamfer = np.clip(bevel, 0, 1)[..., None]
        albedo = anod * (1 - chamfer) + bare * chamfer
        albedo = albedo * (1 - marking[..., None]) + np.float32(0.88) * marking[..., None]
        bg = background[..., None] * np.array([0.95, 1.05, 0.9], np.float32)
        rad = solid[..., None] * albedo * relief[..., None] + (1 - solid[..., None]) * bg
        rad = rad * light[..., None]
    else:  # bare machined aluminium; laser marking is dark
        albedo = 0.63 * (1 - 0.66 * marking)
        rad = (solid * albedo * relief + (1 - solid) * background) * light

    # flat plate surface, clear of edges, floors and marking: where defects may land
    flat = ((solid > 0.99) & (floor < 0.01) & (marking < 0.01)).astype(np.uint8)
    clear = cv2.distanceTransform(flat, cv2.DIST_L2, 5) > (_DEFECT_HALF + 4) * s  # the whole patch fits
    step = max(2, int(6 * s))
    ys, xs = np.nonzero(clear[::step, ::step])
    points = np.stack([xs * step, ys * step], axis=1).astype(np.float32)
    return np.clip(rad, 0.0, 1.0).astype(np.float32), points, removable, s


def _to_format(rad: np.ndarray, pixel_format: str) -> np.ndarray:
    fs = FULL_SCALE[pixel_format]
    dtype = np.uint8 if fs == 255 else np.uint16
    return np.round(rad * fs).astype(dtype)


@functools.lru_cache(maxsize=4)
def _scene(w: int, h: int, pixel_format: str) -> _Scene:
    colour = pixel_format == "BGR8"
    rad, points, holes, s = _render_radiance(w, h, colour, drilled=True)
    plain_rad = _render_radiance(w, h, colour, drilled=False)[0]
    base, plain = _to_format(rad, pixel_format), _to_format(plain_rad, pixel_format)

    fs = FULL_SCALE[pixel_format]
    sigma = _NOISE_SIGMA_8BIT * fs / 255.0
    offset = int(np.ceil(5 * sigma))
    shape = (_NOISE_FIELDS, h + 2 * _NOISE_PAD, w + 2 * _NOISE_PAD) + ((3,) if colour else ())
    rng = np.random.default_rng(7)
    noise = np.clip(np.round(rng.standard_normal(shape, np.float32) * sigma) + offset, 0, 2 * offset)
    noise = noise.astype(base.dtype)
    for a in (base, plain, noise, points):
        a.flags.writeable = False
    return _Scene(base, plain, noise, offset, points, holes, s)


# --- defects -------------------------------------------------------------------------
def _draw_defect(img: np.ndarray, sc: _Scene, kind: str, rng: np.random.Generator,
                 fs: int) -> tuple[int, int, int, int] | None:
    """Draw ``kind`` into ``img`` (part coordinates) in place; return the changed box x0,y0,x1,y1."""
    s = sc.scale
    if kind == "missing_feature":  # the hole was never drilled: show the undrilled plate there
        x, y, r = sc.holes[int(rng.integers(len(sc.holes)))]
        half = int(np.ceil(r + 14 * s))
        x0, y0 = int(x) - half, int(y) - half
        box = (x0, y0, x0 + 2 * half + 1, y0 + 2 * half + 1)
        sl = (slice(box[1], box[3]), slice(box[0], box[2]))
        before = img[sl].copy()
        img[sl] = sc.plain[sl]
        return _changed_box(before, img[sl], box)
    if kind not in _DEFECT_LAYERS:
        raise CameraConfigError(f"unknown defect kind {kind!r}")

    x, y = sc.surface_points[int(rng.integers(len(sc.surface_points)))]
    half = int(np.ceil(_DEFECT_HALF * s))
    size = 2 * half + 1
    box = (int(x) - half, int(y) - half, int(x) - half + size, int(y) - half + size)
    sl = (slice(box[1], box[3]), slice(box[0], box[2]))
    before = img[sl].copy()
    patch = before.astype(np.float32) / fs
    colour = img.ndim == 3
    for mask, tint in _DEFECT_LAYERS[kind](rng, size, s, colour):
        a = mask[..., None] if colour else mask
        patch = patch * (1 - a) + np.asarray(tint, np.float32) * a
    img[sl] = np.round(np.clip(patch, 0, 1) * fs).astype(img.dtype)
    return _changed_box(before, img[sl], box)


def _scratch(rng, size, s, colour):
    """A thin, slightly curved line: a fresh scratch glints, an old one is dark."""
    c = size // 2
    length = rng.uniform(60, 95) * s
    a = rng.uniform(np.radians(15), np.radians(75)) + (np.pi / 2 if rng.random() < 0.5 else 0.0)
    bend = rng.normal(0, 4 * s)
    t = np.linspace(-0.5, 0.5, 9)
    px = c + t * length * np.cos(a) - bend * (4 * t * t - 1) * np.sin(a)
    py = c + t * length * np.sin(a) + bend * (4 * t * t - 1) * np.cos(a)
    u = np.zeros((size, size), np.uint8)
    thick = max(1, int(round(rng.choice([2.0, 3.0]) * s)))
    cv2.polylines(u, [np.round(np.stack([px, py], 1) * 16).astype(np.int32)], False, 255, thick, cv2.LINE_AA, 4)
    m = cv2.GaussianBlur(u.astype(np.float32) / 255.0, (0, 0), 0.6)
    tint = 0.97 if rng.random() < 0.6 else 0.15
    return [(0.9 * m, tint)]


def _spot(rng, size, s, colour):
    """A dent: dark rim and floor, with a highlight on the floor's far side from the light."""
    c = size // 2
    r = rng.uniform(10, 15) * s
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = (xx - c) / r, (yy - c) / r
    rho = np.sqrt(dx * dx + dy * dy)
    ring = np.exp(-(((rho - 1.0) / 0.3) ** 2))
    inside = np.clip((1.0 - rho) * 4, 0, 1)
    facing = -(dx * _LIGHT[0] + dy * _LIGHT[1])  # > 0 on the far side, which faces the light
    dark = np.clip(0.8 * ring + 0.45 * inside * (1 - np.clip(facing, 0, 1)), 0, 0.9)
    bright = 0.6 * inside * np.clip(facing, 0, 1) * np.clip(rho * 1.6, 0, 1)
    return [(dark, 0.06), (bright, 0.95)]


def _contamination(rng, size, s, colour):
    """An irregular, mottled smudge (oil, coolant residue, fingerprint grease)."""
    c = size // 2
    u = np.zeros((size, size), np.uint8)
    spread = rng.uniform(16, 26) * s
    for _ in range(int(rng.integers(8, 14))):
        ex, ey = rng.normal(0, spread * 0.4, 2)
        axes = (int(rng.uniform(0.3, 0.65) * spread) + 1, int(rng.uniform(0.15, 0.4) * spread) + 1)
        cv2.ellipse(u, (int(c + ex), int(c + ey)), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_AA)
    m = cv2.GaussianBlur(u.astype(np.float32) / 255.0, (0, 0), 3.5 * s + 0.5)
    m = np.clip(m * (0.7 + 0.3 * _smooth_noise(rng, size, size, 5 * s)), 0, 1)
    tint = np.array([0.05, 0.09, 0.14], np.float32) if colour else 0.08  # brownish grease in colour
    return [(0.75 * m, tint)]


_DEFECT_LAYERS = {"scratch": _scratch, "spot": _spot, "contamination": _contamination}
_DEFECT_HALF = 52  # px at scale 1: every drawn defect fits in a (2 * half + 1) square


def _transform_box(box, m: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], np.float64) @ m.T
    return (*corners.min(0), *corners.max(0))


def _region(box, margin: int, lo: int, w: int, h: int) -> tuple[int, int, int, int]:
    """Integer x0, y0, x1, y1 covering ``box`` plus ``margin``, clipped to [lo, w) x [lo, h)."""
    x0, y0, x1, y1 = box
    return (max(lo, int(np.floor(x0)) - margin), max(lo, int(np.floor(y0)) - margin),
            min(w, int(np.ceil(x1)) + margin), min(h, int(np.ceil(y1)) + margin))


def _changed_box(before, after, box):
    diff = before != after
    if diff.ndim == 3:
        diff = diff.any(axis=2)
    ys, xs = np.nonzero(diff)
    if len(xs) == 0:
        return None
    return box[0] + int(xs.min()), box[1] + int(ys.min()), box[0] + int(xs.max()) + 1, box[1] + int(ys.max()) + 1


# --- the camera ----------------------------------------------------------------------
class SimCamera(CameraDriver):
    """A deterministic simulated camera: the same machined plate, with defects and faults.

    Ground truth for each frame is in ``frame.meta["sim"]``: ``index`` (n-th part since the
    camera was made), ``defect`` (kind or None), ``defect_bbox`` ([x, y, w, h] in image
    pixels or None), ``fault`` (name or None) and ``offset`` ([dx, dy, deg] actually applied).

    Trigger modes: SOFTWARE (grab renders the next part) and HARDWARE_LINE (``fire_line()``,
    from any thread, is the electrical edge; ``grab`` waits for it).

    ``fault_wait_s`` is how long a "dropped" frame takes to be declared lost: None waits out
    the grab's own timeout, as a real camera does; 0 raises at once.
    """

    trigger_modes = frozenset({TriggerMode.SOFTWARE, TriggerMode.HARDWARE_LINE})

    def __init__(
        self,
        *,
        width: int = 1280,
        height: int = 1024,
        pixel_format: str = "Mono8",
        seed: int = 0,
        serial: str = "SIM-0001",
        exposure_us: float = NOMINAL_EXPOSURE_US,
        gain_db: float = 0.0,
        defect_rate: float = 0.2,
        defect_kinds: tuple[str, ...] | list[str] = DEFECT_KINDS,
        fault_rates: dict[str, float] | None = None,
        jitter_px: float = 1.5,
        jitter_deg: float = 0.3,
        fault_wait_s: float | None = None,
        line_buffer: int = 8,
    ) -> None:
        super().__init__()
        if pixel_format not in PIXEL_FORMATS:
            raise CameraConfigError(f"SimCamera pixel_format must be one of {PIXEL_FORMATS}, got {pixel_format!r}")
        if width < 64 or height < 64:
            raise CameraConfigError(f"SimCamera needs at least 64x64 pixels, got {width}x{height}")
        if not 0.0 <= defect_rate <= 1.0:
            raise CameraConfigError(f"defect_rate must be within 0..1, got {defect_rate}")
        kinds = tuple(defect_kinds)
        bad = [k for k in kinds if k not in DEFECT_KINDS]
        if bad or not kinds:
            raise CameraConfigError(f"defect_kinds must be a non-empty subset of {DEFECT_KINDS}, got {kinds}")
        rates = dict(fault_rates or {})
        for name, p in rates.items():
            if name not in FAULTS:
                raise CameraConfigError(f"unknown fault {name!r} (known: {', '.join(FAULTS)})")
            if not 0.0 <= p <= 1.0:
                raise CameraConfigError(f"fault rate for {name!r} must be within 0..1, got {p}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise CameraConfigError(f"fault rates add up to more than 1: {rates}")
        self.width, self.height, self.pixel_format = int(width), int(height), pixel_format
        self.seed, self.serial = int(seed), serial
        self.defect_rate, self.defect_kinds, self.fault_rates = float(defect_rate), kinds, rates
        self.jitter_px, self.jitter_deg = float(jitter_px), float(jitter_deg)
        self.fault_wait_s = fault_wait_s
        self._exposure_us = NOMINAL_EXPOSURE_US
        self._gain_db = 0.0
        self.set_exposure(exposure_us)
        self.set_gain(gain_db)
        self._lock = threading.Lock()
        self._line = threading.Condition()
        self._edges: deque[int] = deque()
        self._line_buffer = int(line_buffer)
        self._disarmed = threading.Event()
        self._faults: deque[str] = deque()
        self._next_index = 0
        self._open = False
        self.overtriggers = 0  # line edges lost because the buffer was full

    # --- lifecycle -------------------------------------------------------------------
    def open(self) -> None:
        sc = _scene(self.width, self.height, self.pixel_format)  # render once, before the first trigger
        reach = min(_ANGLE_LIMIT, int(np.ceil(3 * self.jitter_deg / _ANGLE_STEP)))
        for step in range(-reach, reach + 1):  # the rotations 99.7 % of grabs use
            sc.rotated(step)
        self._open = True

    def close(self) -> None:
        self.disarm()
        self._open = False

    def describe(self) -> CameraInfo:
        return CameraInfo(vendor="LineStation", model="SimCamera", serial=self.serial, width=self.width,
                          height=self.height, pixel_format=self.pixel_format, exposure_us=self._exposure_us,
                          gain_db=self._gain_db, trigger_modes=self.trigger_modes)

    def arm(self, mode: TriggerMode = TriggerMode.SOFTWARE) -> None:
        if not self._open:
            raise CameraConfigError("SimCamera is not open")
        super().arm(mode)
        with self._line:
            self._edges.clear()
        self._disarmed.clear()

    def disarm(self) -> None:
        with self._line:
            super().disarm()
            self._edges.clear()
            self._line.notify_all()
        self._disarmed.set()

    # --- settings --------------------------------------------------------------------
    def set_exposure(self, exposure_us: float) -> None:
        if not 10.0 <= exposure_us <= 1_000_000.0:
            raise CameraConfigError(f"exposure {exposure_us} us is outside 10..1000000 us")
        self._exposure_us = float(exposure_us)

    def set_gain(self, gain_db: float) -> None:
        if not 0.0 <= gain_db <= 48.0:
            raise CameraConfigError(f"gain {gain_db} dB is outside 0..48 dB")
        self._gain_db = float(gain_db)

    @property
    def exposure_us(self) -> float:
        return self._exposure_us

    @property
    def gain_db(self) -> float:
        return self._gain_db

    # --- simulation controls ----------------------------------------------------------
    def inject(self, fault: str, count: int = 1) -> None:
        """Make each of the next ``count`` grabs suffer ``fault`` (overrides random faults)."""
        if fault not in FAULTS:
            raise CameraConfigError(f"unknown fault {fault!r} (known: {', '.join(FAULTS)})")
        with self._lock:
            self._faults.extend([fault] * int(count))

    def fire_line(self) -> bool:
        """The trigger input's edge. Thread-safe. False if ignored (not armed for it, buffer full)."""
        with self._line:
            if self._mode is not TriggerMode.HARDWARE_LINE:
                return False
            if len(self._edges) >= self._line_buffer:
                self.overtriggers += 1
                return False
            self._edges.append(time.monotonic_ns())
            self._line.notify()
            return True

    def good_images(self, n: int, start: int = 0) -> list[np.ndarray]:
        """``n`` defect-free, fault-free parts (jitter and noise as live), for calibration/training.

        They come from their own random stream, so they never repeat a live grab's noise;
        ``start`` picks where in that stream (so calibration and training sets can differ).
        """
        return [self._render(i, None, None, stream=1)[0] for i in range(start, start + n)]

    def seek(self, index: int) -> None:
        """Make the next grab render part ``index`` (a restarted demo carries on the sequence
        instead of replaying the same parts)."""
        if index < 0:
            raise CameraConfigError(f"part index must be >= 0, got {index}")
        with self._lock:
            self._next_index = int(index)

    def render(self, index: int, *, defect: str | None = "auto", fault: str | None = "auto"
               ) -> tuple[np.ndarray, dict]:
        """The ``index``-th part as ``grab`` would produce it, without side effects.

        ``defect`` / ``fault`` override the seeded choice ("auto"): None for none, or a kind /
        fault name. Pose, noise and the defect's location stay those of ``index``, so two
        renders differing only in ``defect`` differ only inside the defect's box.
        A "dropped" fault renders the frame the camera would have lost.
        """
        return self._render(index, defect, fault)

    # --- capture ---------------------------------------------------------------------
    def grab(self, timeout_s: float = 1.0) -> Frame:
        t0 = time.monotonic()
        if not self._open:
            raise CameraConfigError("SimCamera is not open")
        mode = self._mode
        if mode is None:
            raise CameraConfigError("SimCamera is not armed; call arm() before grab()")
        edge_ns = None
        if mode is TriggerMode.HARDWARE_LINE:
            with self._line:
                got = self._line.wait_for(lambda: self._edges or self._mode is not mode, timeout_s)
                if not got or not self._edges:
                    why = "disarmed" if self._mode is not mode else f"no line trigger within {timeout_s:g} s"
                    raise CaptureTimeout(f"{self.serial}: {why}")
                edge_ns = self._edges.popleft()
        with self._lock:
            index = self._next_index
            self._next_index += 1
            trigger_id = self._next_trigger_id()
            queued = self._faults.popleft() if self._faults else "auto"
            exposure, gain = self._exposure_us, self._gain_db
        fault = self._pick_fault(index) if queued == "auto" else queued
        if fault == "dropped":
            wait = timeout_s - (time.monotonic() - t0) if self.fault_wait_s is None else self.fault_wait_s
            self._disarmed.wait(max(0.0, wait))
            raise CaptureTimeout(f"{self.serial}: frame {trigger_id} (part {index}) was dropped")
        image, meta = self._render(index, "auto", fault, exposure_us=exposure, gain_db=gain)
        return Frame(image=image, pixel_format=self.pixel_format, camera_serial=self.serial,
                     exposure_us=exposure, gain_db=gain, trigger_id=trigger_id,
                     device_timestamp_ns=edge_ns if edge_ns is not None else time.monotonic_ns(),
                     source=f"sim://{self.serial}/{index}", meta={"sim": meta})

    # --- rendering -------------------------------------------------------------------
    def _rng(self, index: int, stream: int, part: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, stream, index, part])

    def _pick_fault(self, index: int, stream: int = 0) -> str | None:
        u = self._rng(index, stream, 2).random()
        for name in FAULTS:
            u -= self.fault_rates.get(name, 0.0)
            if u < 0:
                return name
        return None

    def _shift_rotated(self, sc: _Scene, src: np.ndarray, box, step: int, dx: float, dy: float):
        """The banked rotation ``step`` shifted by (dx, dy) with bilinear interpolation.

        A defect (already drawn into ``src`` within ``box``) is carried over by warping just
        its region; returns (image, defect region x0, y0, x1, y1 in the image or None).
        """
        p, h, w = _SHIFT_PAD, self.height, self.width
        rot = sc.rotated(step)
        region = None
        if box is not None:
            m = sc.rotation_matrix(step * _ANGLE_STEP, p)
            x0, y0, x1, y1 = _region(_transform_box(box, m), 1, 0, w + 2 * p, h + 2 * p)
            rot = rot.copy()
            m[:, 2] -= (x0, y0)
            rot[y0:y1, x0:x1] = cv2.warpAffine(src, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                               borderMode=cv2.BORDER_REFLECT_101)
            region = (x0, y0, x1, y1)
        ix, iy = int(np.floor(dx)), int(np.floor(dy))
        fx, fy = dx - ix, dy - iy
        # out(x, y) = rot(x - dx, y - dy): blend the two columns, then the two rows, around it
        rows = slice(p - iy - 1, p - iy + h)
        across = cv2.addWeighted(rot[rows, p - ix:p - ix + w], 1.0 - fx, rot[rows, p - ix - 1:p - ix - 1 + w], fx, 0.0)
        img = cv2.addWeighted(across[1:], 1.0 - fy, across[:-1], fy, 0.0)
        if region is not None:  # a rot pixel reaches the output pixel at +(i - pad) and the next one
            x0, y0, x1, y1 = region
            region = _region((x0 - p + ix, y0 - p + iy, x1 - p + ix + 1, y1 - p + iy + 1), 0, 0, w, h)
        return img, region

    def _render(self, index: int, defect, fault, *, stream: int = 0, exposure_us=None, gain_db=None):
        sc = _scene(self.width, self.height, self.pixel_format)
        fs = FULL_SCALE[self.pixel_format]
        if fault == "auto":
            fault = self._pick_fault(index, stream)
        if fault is not None and fault not in FAULTS:
            raise CameraConfigError(f"unknown fault {fault!r}")
        pose = self._rng(index, stream, 0)
        dx, dy = pose.normal(0.0, self.jitter_px, 2)
        deg = pose.normal(0.0, self.jitter_deg)
        if fault == "offset":
            ang, dist = pose.uniform(0, 2 * np.pi), pose.uniform(25, 60) * sc.scale
            dx, dy = dx + dist * np.cos(ang), dy + dist * np.sin(ang)
            deg += pose.choice([-1.0, 1.0]) * pose.uniform(1.5, 4.0)
        noise_pick = pose.integers(0, [_NOISE_FIELDS, 2 * _NOISE_PAD + 1, 2 * _NOISE_PAD + 1])
        drng = self._rng(index, stream, 1)
        if defect == "auto":
            chance, pick = drng.random(), drng.integers(len(self.defect_kinds))
            defect = self.defect_kinds[pick] if chance < self.defect_rate else None
        elif defect is not None and defect not in DEFECT_KINDS:
            raise CameraConfigError(f"unknown defect kind {defect!r}")

        step = int(round(deg / _ANGLE_STEP))
        ix, iy = int(np.floor(dx)), int(np.floor(dy))
        banked = abs(step) <= _ANGLE_LIMIT and max(abs(ix), abs(iy)) < _SHIFT_PAD - 1 and fault != "offset"
        if banked:  # snap the rotation to the bank; the shift stays exact
            deg = step * _ANGLE_STEP
        src, box = sc.base, None
        if defect is not None:
            src = sc.base.copy()
            box = _draw_defect(src, sc, defect, self._rng(index, stream, 3), fs)
        if banked:
            img, bbox = self._shift_rotated(sc, src, box, step, dx, dy)
        else:
            m = sc.rotation_matrix(deg)
            m[:, 2] += (dx, dy)
            img = cv2.warpAffine(src, m, (self.width, self.height), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REFLECT_101)
            bbox = None if box is None else _region(_transform_box(box, m), 1, 0, self.width, self.height)
        if fault == "blur":
            img = cv2.GaussianBlur(img, (0, 0), 3.5 * sc.scale + 0.5)

        exposure = self._exposure_us if exposure_us is None else exposure_us
        gain = 10.0 ** ((self._gain_db if gain_db is None else gain_db) / 20.0)
        signal = exposure / NOMINAL_EXPOSURE_US * gain * _FAULT_GAIN.get(fault, 1.0)
        k, oy, ox = (int(v) for v in noise_pick)
        noise = sc.noise[k, oy:oy + self.height, ox:ox + self.width]
        img = cv2.addWeighted(img, signal, noise, gain, -sc.noise_offset * gain)
        if fs == 4095:
            np.minimum(img, fs, out=img)

        if bbox is not None:
            bbox = [bbox[0], bbox[1], bbox[2] - bbox[0], bbox[3] - bbox[1]]
        meta = {"index": index, "defect": defect if box is not None else None, "defect_bbox": bbox,
                "fault": fault, "offset": [round(float(dx), 3), round(float(dy), 3), round(float(deg), 4)]}
        return img, meta


def render_good(n: int, seed: int = 0, **camera_kwargs) -> list[np.ndarray]:
    """``n`` defect-free, fault-free sim images (e.g. to calibrate or train on a first run)."""
    kwargs = {k: v for k, v in camera_kwargs.items() if k not in ("defect_rate", "fault_rates")}
    return SimCamera(seed=seed, **kwargs).good_images(n)
