"""Synthetic parts for detector tests (and their fixtures in conftest.py): a textured part on a background, captured with
Gaussian noise and small sub-pixel shifts/rotations whose alignment matrices are known."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

W, H = 640, 512
PART = (120, 96, 520, 416)  # x0, y0, x1, y1 of the part in reference pixels
HOLES = [(200, 180), (440, 180), (200, 340), (440, 340)]
HOLE_R = 14


@dataclass(frozen=True)
class Defect:
    kind: str
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 in reference pixels


def render_reference(missing_hole: int | None = None) -> np.ndarray:
    """The ideal part, float32 grey levels (8-bit scale), rendered 2x and area-reduced."""
    s = 2
    img = np.full((H * s, W * s), 55.0, np.float32)
    x0, y0, x1, y1 = (v * s for v in PART)
    cv2.rectangle(img, (x0, y0), (x1, y1), 165.0, -1, cv2.LINE_AA)
    for i in range(8):  # machined grooves
        y = y0 + (40 + 30 * i) * s
        cv2.line(img, (x0 + 30 * s, y), (x0 + 110 * s, y), 120.0, 3 * s, cv2.LINE_AA)
    cv2.putText(img, "LS-0042", ((x0 + 150 * s), (y0 + 170 * s)), cv2.FONT_HERSHEY_SIMPLEX,
                1.2 * s, 90.0, 2 * s, cv2.LINE_AA)
    cv2.circle(img, ((x0 + 330 * s), (y0 + 100 * s)), 40 * s, 200.0, 3 * s, cv2.LINE_AA)
    for j, (hx, hy) in enumerate(HOLES):
        if j != missing_hole:
            cv2.circle(img, (hx * s, hy * s), HOLE_R * s, 30.0, -1, cv2.LINE_AA)
    # shading across the field, as from an off-axis light
    yy, xx = np.mgrid[0 : H * s, 0 : W * s].astype(np.float32)
    img *= 0.9 + 0.2 * xx / (W * s)
    return cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)


def add_defect(ref: np.ndarray, kind: str, where: tuple[int, int] | None = None) -> tuple[np.ndarray, Defect]:
    img = ref.copy()
    if kind == "scratch":
        x, y = where or (300, 300)
        cv2.line(img, (x, y), (x + 36, y + 14), 110.0, 2, cv2.LINE_AA)
        return img, Defect(kind, (x - 2, y - 2, x + 38, y + 16))
    if kind == "dark_spot":
        x, y = where or (380, 250)
        cv2.circle(img, (x, y), 4, 95.0, -1, cv2.LINE_AA)
        return img, Defect(kind, (x - 5, y - 5, x + 5, y + 5))
    if kind == "missing_hole":
        hx, hy = HOLES[1]
        return render_reference(missing_hole=1), Defect(kind, (hx - HOLE_R, hy - HOLE_R, hx + HOLE_R, hy + HOLE_R))
    if kind == "smudge":
        x, y = where or (260, 380)
        blob = np.zeros_like(img)
        cv2.circle(blob, (x, y), 10, 1.0, -1)
        blob = cv2.GaussianBlur(blob, (0, 0), 4)
        img -= 30.0 * blob
        return img, Defect(kind, (x - 16, y - 16, x + 16, y + 16))
    raise ValueError(kind)


def random_alignment(rng: np.random.Generator, max_shift: float = 3.0, max_deg: float = 0.4) -> np.ndarray:
    """A frame -> reference affine: small rotation about the centre plus a sub-pixel shift."""
    a = cv2.getRotationMatrix2D((W / 2, H / 2), float(rng.uniform(-max_deg, max_deg)), 1.0)
    a[:, 2] += rng.uniform(-max_shift, max_shift, size=2)
    return a


def capture(ref: np.ndarray, alignment: np.ndarray | None, rng: np.random.Generator,
            noise: float = 2.5, dtype=np.uint8, scale: float = 1.0) -> np.ndarray:
    """What the camera sees when ``alignment`` maps its pixels onto the reference."""
    a = np.eye(2, 3) if alignment is None else alignment
    frame = cv2.warpAffine(ref, a, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE)
    frame = frame + rng.normal(0.0, noise, frame.shape).astype(np.float32)
    top = np.iinfo(dtype).max
    return np.clip(np.rint(frame * scale), 0, top).astype(dtype)


def frame_bbox(defect: Defect, alignment: np.ndarray | None) -> tuple[float, float, float, float]:
    """The defect's bbox in frame pixels (reference bbox corners mapped back)."""
    x0, y0, x1, y1 = defect.bbox
    a = np.vstack([np.eye(2, 3) if alignment is None else alignment, (0, 0, 1)])
    inv = np.linalg.inv(a)
    pts = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], float) @ inv[:2].T
    return pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()


class PartSim:
    def __init__(self, seed: int = 7) -> None:
        self.rng = np.random.default_rng(seed)
        self.ref = render_reference()

    def good(self, n: int, **kw) -> tuple[list[np.ndarray], list[np.ndarray]]:
        aligns = [random_alignment(self.rng) for _ in range(n)]
        return [capture(self.ref, a, self.rng, **kw) for a in aligns], aligns

    def defective(self, kind: str, where=None, **kw) -> tuple[np.ndarray, np.ndarray, Defect]:
        img, defect = add_defect(self.ref, kind, where)
        a = random_alignment(self.rng)
        return capture(img, a, self.rng, **kw), a, defect
