"""From a camera frame to PatchCore patch features: ROI window, input tensor, aggregation.

**Window.** The model looks at the calibration ROI (reference coordinates) only. The ROI is
scaled as a whole so that its long side becomes ``long_side`` pixels: the aspect ratio of
an elongated part is kept, never squashed to a square. Frame pixels reach the window by
the alignment (frame -> reference affine from registration): the ROI's bounding box in
the frame is cropped, area-downscaled (``cv2.INTER_AREA``, so fine texture is averaged,
not aliased) and warped onto the window. The window is then padded (edge replicate) to a
multiple of 16, which the backbone needs; features of the padding are dropped.

**Input.** Grey (HxW / HxWx1), BGR and BGRA frames, 8- or 16-bit. Values are scaled by the
bit depth (Mono12 in uint16 = /4095) to 0..1; grey is replicated to three channels, BGR is
reordered to the RGB the backbone was trained on.

**Features.** Stride-8 and stride-16 backbone maps, each averaged over 3x3 neighbours
(PatchCore's local aggregation: a patch feature describes its neighbourhood), the stride-16
map upsampled to stride 8, each layer scaled so both weigh the same in distances (their raw
norms differ several-fold), concatenated and optionally reduced by a fixed random
projection (distance-preserving, unlike PCA, which would drop exactly the directions in
which good patches do not vary and defects do).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from calibration.roi import Roi
from station.detect.onnx_backbone import OnnxBackbone

_SUPPORTED = (np.dtype(np.uint8), np.dtype(np.uint16))


def channels_of(image: np.ndarray) -> int:
    """1 (grey), 3 (BGR) or 4 (BGRA); ValueError for anything else."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected a numpy image, got {type(image).__name__}")
    if image.dtype not in _SUPPORTED:
        raise ValueError(f"images must be uint8 or uint16, got {image.dtype}")
    if image.ndim == 2:
        return 1
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        return int(image.shape[2])
    raise ValueError(f"expected an HxW or HxWx{{1,3,4}} image, got shape {image.shape}")


def infer_bit_depth(dtype: np.dtype, top: int) -> int:
    """8 for uint8; for uint16 the smallest of 10/12/14/16 bits holding ``top``."""
    if np.dtype(dtype) == np.uint8:
        return 8
    return next(b for b in (10, 12, 14, 16) if top < (1 << b))


def _affine3(alignment: np.ndarray | None) -> np.ndarray:
    if alignment is None:
        return np.eye(3)
    a = np.asarray(alignment, dtype=np.float64)
    if a.shape == (3, 3) and np.allclose(a[2], (0.0, 0.0, 1.0)):
        a = a[:2]
    if a.shape != (2, 3):
        raise ValueError(f"alignment must be a 2x3 affine matrix, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("alignment contains non-finite values")
    m = np.vstack([a, (0.0, 0.0, 1.0)])
    if abs(np.linalg.det(m)) < 1e-9:
        raise ValueError("alignment is singular")
    return m


@dataclass(frozen=True)
class Window:
    """The ROI as the network sees it: ``size`` (w, h) pixels, padded to ``padded``."""

    roi: Roi
    size: tuple[int, int]
    padded: tuple[int, int]

    @classmethod
    def for_roi(cls, roi: Roi, long_side: int, multiple: int = 16) -> Window:
        s = long_side / max(roi.width, roi.height)
        w = max(multiple, int(round(roi.width * s)))
        h = max(multiple, int(round(roi.height * s)))
        pw, ph = -(-w // multiple) * multiple, -(-h // multiple) * multiple
        return cls(roi=roi, size=(w, h), padded=(pw, ph))

    def to_reference(self) -> np.ndarray:
        """3x3 affine from window pixels to reference pixels (pixel centres matched)."""
        sx, sy = self.roi.width / self.size[0], self.roi.height / self.size[1]
        return np.array([
            [sx, 0.0, self.roi.x + 0.5 * sx - 0.5],
            [0.0, sy, self.roi.y + 0.5 * sy - 0.5],
            [0.0, 0.0, 1.0],
        ])

    def to_frame(self, alignment: np.ndarray | None) -> np.ndarray:
        """3x3 affine from window pixels to frame pixels."""
        return np.linalg.inv(_affine3(alignment)) @ self.to_reference()

    def grid(self, stride: int) -> tuple[int, int]:
        """Valid feature rows/cols (not in the padding) at ``stride``."""
        return -(-self.size[1] // stride), -(-self.size[0] // stride)


def window_image(image: np.ndarray, win: Window, alignment: np.ndarray | None) -> np.ndarray:
    """The frame's ROI warped onto the window, native dtype, channels as in the frame."""
    fh, fw = image.shape[:2]
    w2f = win.to_frame(alignment)
    w, h = win.size
    corners = np.array([[-0.5, -0.5, 1], [w - 0.5, -0.5, 1], [-0.5, h - 0.5, 1], [w - 0.5, h - 0.5, 1]]) @ w2f.T
    bx0 = int(np.clip(math.floor(corners[:, 0].min()) - 1, 0, fw - 1))
    by0 = int(np.clip(math.floor(corners[:, 1].min()) - 1, 0, fh - 1))
    bx1 = int(np.clip(math.ceil(corners[:, 0].max()) + 2, bx0 + 1, fw))
    by1 = int(np.clip(math.ceil(corners[:, 1].max()) + 2, by0 + 1, fh))
    crop = image[by0:by1, bx0:bx1]
    # Scale of the window relative to the frame (alignment may scale slightly).
    lin = w2f[:2, :2]
    shrink = 1.0 / max(np.sqrt(abs(np.linalg.det(lin))), 1e-9)
    cw, ch = bx1 - bx0, by1 - by0
    if shrink < 0.99:  # area-average first, then a near-unit warp cannot alias
        sw, sh = max(1, int(round(cw * shrink))), max(1, int(round(ch * shrink)))
        small = cv2.resize(crop, (sw, sh), interpolation=cv2.INTER_AREA)
        kx, ky = sw / cw, sh / ch
        to_small = np.array([[kx, 0, 0.5 * kx - 0.5 - kx * bx0], [0, ky, 0.5 * ky - 0.5 - ky * by0], [0, 0, 1.0]])
    else:
        small = crop
        to_small = np.array([[1.0, 0, -bx0], [0, 1.0, -by0], [0, 0, 1.0]])
    m = (to_small @ w2f)[:2]
    if np.allclose(m[:, :2], np.eye(2), atol=1e-6) and np.allclose(m[:, 2], np.round(m[:, 2]), atol=1e-6):
        ox, oy = int(round(m[0, 2])), int(round(m[1, 2]))  # a pure integer shift: slice
        if 0 <= ox and 0 <= oy and ox + w <= small.shape[1] and oy + h <= small.shape[0]:
            return small[oy:oy + h, ox:ox + w]
    out = cv2.warpAffine(small, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REPLICATE)
    return out


def to_input(win_img: np.ndarray, win: Window, max_value: float) -> np.ndarray:
    """Window image -> 1x3xHxW float32 RGB in 0..1, padded to the backbone's multiple."""
    x = win_img
    if x.ndim == 3 and x.shape[2] == 4:
        x = x[:, :, :3]
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[:, :, 0]
    pw, ph = win.padded
    w, h = win.size
    if pw != w or ph != h:
        x = cv2.copyMakeBorder(x, 0, ph - h, 0, pw - w, cv2.BORDER_REPLICATE)
    f = x.astype(np.float32)
    f *= np.float32(1.0 / max_value)
    if f.ndim == 2:
        return np.broadcast_to(f, (1, 3, ph, pw))
    return np.ascontiguousarray(f[:, :, ::-1].transpose(2, 0, 1))[None]  # BGR -> RGB, CHW


class PatchFeaturizer:
    """Backbone maps -> aggregated, scaled, projected patch features on the stride-8 grid."""

    def __init__(self, backbone: OnnxBackbone, *, aggregate: int, layer_scale: np.ndarray | None,
                 projection: np.ndarray | None) -> None:
        self.backbone = backbone
        self.aggregate = aggregate
        self.layer_scale = layer_scale  # one factor per layer; None until measured
        self.projection = projection  # (D_in, D_out) float32 or None
        strides = backbone.info.strides
        self.names = sorted(strides, key=lambda n: strides[n])
        self.stride = strides[self.names[0]]

    @property
    def raw_dim(self) -> int:
        return sum(self.backbone.info.channels[n] for n in self.names)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Raw backbone maps, one H_l x W_l x C_l (float32) per layer, finest first."""
        out = self.backbone.features(batch, self.names)
        return [np.ascontiguousarray(out[n][0].transpose(1, 2, 0)) for n in self.names]

    def _finish(self, m: np.ndarray, full: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
        """Aggregate over neighbours, bring to the stride-8 grid, cut to the valid cells."""
        if self.aggregate > 1:
            m = cv2.blur(m, (self.aggregate, self.aggregate), borderType=cv2.BORDER_REPLICATE)
        if m.shape[:2] != full:
            m = cv2.resize(m, (full[1], full[0]), interpolation=cv2.INTER_LINEAR)
            if m.ndim == 2:
                m = m[:, :, None]
        return m[: grid[0], : grid[1]]

    def layers(self, raw: list[np.ndarray], win: Window) -> list[np.ndarray]:
        """Per layer: gh x gw x C_l aggregated maps on the stride-8 grid (unscaled)."""
        grid, full = win.grid(self.stride), raw[0].shape[:2]
        return [self._finish(m, full, grid) for m in raw]

    def features(self, raw: list[np.ndarray], win: Window) -> np.ndarray:
        """(gh*gw) x D patch features.

        With a projection, each layer is projected at its own resolution first and then
        aggregated and upsampled: both are linear per channel, so the result equals
        projecting the concatenated aggregated maps, at a fraction of the work (64
        instead of 112 channels through blur and resize, stride-16 rows 4x fewer).
        """
        if self.layer_scale is None:
            raise RuntimeError("layer_scale not set: measure it on training features first")
        grid, full = win.grid(self.stride), raw[0].shape[:2]
        n = grid[0] * grid[1]
        if self.projection is None:
            parts = [m.reshape(n, -1) * np.float32(s) for m, s in zip(self.layers(raw, win), self.layer_scale)]
            return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)
        out = None
        row = 0
        for m, s in zip(raw, self.layer_scale):
            h, w, c = m.shape
            p = self.projection[row : row + c] * np.float32(s)
            row += c
            proj = (m.reshape(h * w, c) @ p).reshape(h, w, -1)
            part = self._finish(proj, full, grid)
            out = part.copy() if out is None else out + part
        return np.ascontiguousarray(out.reshape(n, -1), dtype=np.float32)

    def __call__(self, batch: np.ndarray, win: Window) -> tuple[np.ndarray, tuple[int, int]]:
        return self.features(self.run(batch), win), win.grid(self.stride)


def layer_scales(samples: list[list[np.ndarray]]) -> np.ndarray:
    """Factors giving each layer a root-mean-square patch norm of 1 over ``samples``."""
    n_layers = len(samples[0])
    out = np.ones(n_layers, np.float32)
    for i in range(n_layers):
        sq = [float(np.mean(np.sum(np.square(s[i], dtype=np.float64), axis=2))) for s in samples]
        out[i] = 1.0 / math.sqrt(max(np.mean(sq), 1e-12))
    return out
