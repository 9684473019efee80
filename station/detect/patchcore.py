"""PatchCore-class anomaly model: the station's default detector (CPU, onnxruntime only).

After Roth et al., "Towards Total Recall in Industrial Anomaly Detection" (PatchCore):

- **Features**: mid-level patch features of an ImageNet-pretrained EfficientNet-Lite0
  (stride 8 and 16, locally aggregated; :mod:`~station.detect.patchcore_features`) over the
  calibration ROI, scaled as a whole so its long side is ``long_side`` pixels (aspect kept).
- **Memory bank**: the good patches of the training images, reduced by greedy coreset
  selection (:mod:`~station.detect.patchcore_search`), stored as float16.
- **Anomaly map**: distance of every patch to its nearest bank patch, upsampled to the
  window and Gaussian-smoothed (``sigma`` in window pixels). **Image score**: the maximum
  of the smoothed map, so a score above the threshold always comes with mask pixels.
- **Threshold** (explicit, from held-out good images): the training images are split into
  ``folds``; each image is scored against the bank *without the patches that came from
  its own fold*, which is what an unseen good part sees. The threshold is the
  ``1 - frr_target`` quantile of the held-out good scores (an observed score, never
  interpolated below it; with fewer than ``1 / frr_target`` images it is their maximum)
  times ``margin``, head room for production variation. The quantile, not the maximum,
  because with hundreds of images the maximum is one odd image (a soiled part), and
  a threshold set by it misses most small defects. The held-out score distribution is kept in
  ``training["good_scores"]`` so monitoring can compare live scores against it.
- **Mask**: pixels of the smoothed map above the threshold (empty when not anomalous);
  ``TotalPercentageArea`` is its share of the ROI. The heatmap is the smoothed map in frame
  pixels, 0..1 with 1 = twice the threshold.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from calibration.roi import Roi
from station.detect.base import (
    ANOMALY_COLORS,
    BACKGROUND,
    Anomaly,
    DetectionResult,
    Detector,
    ParamsMixin,
    confidence_from_score,
    confidence_scale,
)
from station.detect.onnx_backbone import OnnxBackbone, load_backbone
from station.detect.patchcore_features import (
    PatchFeaturizer,
    Window,
    channels_of,
    to_input,
    window_image,
)
from station.detect.patchcore_search import NearestNeighbours

MODEL_TYPE = "patchcore"
MIN_TRAIN_IMAGES = 4
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PatchCoreParams(ParamsMixin):
    """Training and inference parameters of a :class:`PatchCoreModel`."""

    long_side: int = 320  # window long side in pixels (the ROI is scaled, aspect kept)
    aggregate: int = 3  # local neighbourhood averaged into each patch feature (odd, 1 = off)
    proj_dim: int = 0  # random projection of the 152 feature channels (0 = keep all: best maps)
    coreset_ratio: float = 0.1  # bank size as a fraction of all training patches ...
    coreset_max: int = 2048  # ... capped here (search time grows with the bank)
    pool_max: int = 80_000  # patches the coreset is selected from (uniform subsample)
    select_dim: int = 32  # projection used for distances during coreset selection
    k: int = 1  # nearest neighbours averaged per patch
    sigma: float = 4.0  # Gaussian smoothing of the anomaly map, window pixels
    margin: float = 1.1  # threshold = quantile(held-out good scores, 1 - frr_target) * margin
    frr_target: float = 0.01  # share of held-out good images allowed above the quantile
    folds: int = 5  # folds of the held-out threshold estimate
    seed: int = 0
    bit_depth: int | None = None  # significant bits of uint16 input; None: inferred
    threads: int = 2  # onnxruntime intra-op threads

    def __post_init__(self) -> None:
        problems = []

        def need(ok: bool, msg: str) -> None:
            if not ok:
                problems.append(msg)

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        need(is_int(self.long_side) and 64 <= self.long_side <= 2048, f"long_side must be an int in 64..2048, got {self.long_side!r}")
        need(is_int(self.aggregate) and self.aggregate >= 1 and self.aggregate % 2 == 1, f"aggregate must be an odd int >= 1, got {self.aggregate!r}")
        need(is_int(self.proj_dim) and self.proj_dim >= 0, f"proj_dim must be an int >= 0, got {self.proj_dim!r}")
        need(isinstance(self.coreset_ratio, (int, float)) and 0 < self.coreset_ratio <= 1, f"coreset_ratio must be in (0, 1], got {self.coreset_ratio!r}")
        need(is_int(self.coreset_max) and self.coreset_max >= 1, f"coreset_max must be an int >= 1, got {self.coreset_max!r}")
        need(is_int(self.pool_max) and self.pool_max >= 1, f"pool_max must be an int >= 1, got {self.pool_max!r}")
        need(is_int(self.select_dim) and self.select_dim >= 0, f"select_dim must be an int >= 0, got {self.select_dim!r}")
        need(is_int(self.k) and self.k >= 1, f"k must be an int >= 1, got {self.k!r}")
        need(isinstance(self.sigma, (int, float)) and self.sigma >= 0, f"sigma must be >= 0, got {self.sigma!r}")
        need(isinstance(self.margin, (int, float)) and self.margin >= 1.0, f"margin must be >= 1, got {self.margin!r}")
        need(isinstance(self.frr_target, (int, float)) and 0 <= self.frr_target < 0.5, f"frr_target must be in [0, 0.5), got {self.frr_target!r}")
        need(is_int(self.folds) and self.folds >= 2, f"folds must be an int >= 2, got {self.folds!r}")
        need(is_int(self.seed), f"seed must be an int, got {self.seed!r}")
        need(self.bit_depth is None or (is_int(self.bit_depth) and 1 <= self.bit_depth <= 16), f"bit_depth must be None or an int in 1..16, got {self.bit_depth!r}")
        need(is_int(self.threads) and self.threads >= 1, f"threads must be an int >= 1, got {self.threads!r}")
        if problems:
            raise ValueError("invalid PatchCoreParams: " + "; ".join(problems))



class PatchCoreModel(Detector):
    """Patch features + coreset memory bank + nearest-neighbour anomaly map."""

    model_type = MODEL_TYPE

    def __init__(
        self,
        *,
        bank: np.ndarray,
        layer_scale: np.ndarray,
        projection: np.ndarray | None,
        params: PatchCoreParams,
        threshold: float,
        reference_shape: tuple[int, ...],
        dtype: np.dtype | str,
        bit_depth: int,
        roi: Roi | None = None,
        n_images: int = 0,
        training: dict[str, Any] | None = None,
        created_at: str | None = None,
        model_id: str | None = None,
        model_version: str = "",
        backbone: OnnxBackbone | None = None,
        backbone_sha256: str | None = None,
    ) -> None:
        self.params = params
        self.backbone = backbone or load_backbone(threads=params.threads)
        if backbone_sha256 and backbone_sha256 != self.backbone.info.sha256:
            raise ValueError(
                f"model was trained with backbone {backbone_sha256[:12]}, installed backbone "
                f"{self.backbone.path} is {self.backbone.info.sha256[:12]}: retrain the model"
            )
        self.bank = np.ascontiguousarray(bank, dtype=np.float16)
        self.layer_scale = np.asarray(layer_scale, np.float32)
        self.projection = None if projection is None else np.ascontiguousarray(projection, np.float32)
        self.threshold = float(threshold)
        self.reference_shape = tuple(int(v) for v in reference_shape)
        self.dtype = np.dtype(dtype)
        self.bit_depth = int(bit_depth)
        self.max_value = float((1 << self.bit_depth) - 1)
        self.roi = roi or Roi.full(self.reference_shape)
        if not self.roi.fits(self.reference_shape):
            raise ValueError(f"ROI {self.roi.as_list()} does not fit reference {self.reference_shape[:2]}")
        self.n_images = int(n_images)
        self.training = dict(training or {})
        self.created_at = created_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.featurizer = PatchFeaturizer(self.backbone, aggregate=params.aggregate,
                                          layer_scale=self.layer_scale, projection=self.projection)
        dim = self.projection.shape[1] if self.projection is not None else self.featurizer.raw_dim
        if self.bank.ndim != 2 or self.bank.shape[1] != dim:
            raise ValueError(f"memory bank has shape {self.bank.shape}, expected N x {dim}")
        self._nn = NearestNeighbours(self.bank.astype(np.float32), k=min(params.k, len(self.bank)))
        self._windows: dict[Roi, Window] = {}
        self.model_hash = self._content_hash()
        if model_id is None:
            stamp = datetime.fromisoformat(self.created_at).strftime("%Y%m%dT%H%M%S")
            model_id = f"{MODEL_TYPE}-{stamp}-{self.model_hash[:6]}"
        self.model_id = model_id
        self.model_version = model_version

    # ------------------------------------------------------------------ shared steps

    def _window(self, roi: Roi) -> Window:
        win = self._windows.get(roi)
        if win is None:
            win = self._windows[roi] = Window.for_roi(roi, self.params.long_side, self.backbone.info.multiple_of)
        return win

    def _check_image(self, image: np.ndarray) -> None:
        channels_of(image)
        if image.shape != self.reference_shape or image.dtype != self.dtype:
            raise ValueError(f"image is {image.shape} {image.dtype}, model {self.model_id} expects "
                             f"{self.reference_shape} {self.dtype}")

    def anomaly_map(self, image: np.ndarray, *, roi: Roi | None = None,
                    alignment: np.ndarray | None = None) -> tuple[np.ndarray, Window]:
        """The smoothed anomaly map over the ROI window (window pixels, model units)."""
        self._check_image(image)
        roi = roi or self.roi
        if not roi.fits(self.reference_shape):
            raise ValueError(f"ROI {roi.as_list()} does not fit reference {self.reference_shape[:2]}")
        win = self._window(roi)
        return _map_from_features(self.featurizer, self._nn, image, win, alignment, self.max_value,
                                  self.params.sigma), win

    # ------------------------------------------------------------------ inference

    def detect(self, image: np.ndarray, *, roi: Roi | None = None,
               alignment: np.ndarray | None = None) -> DetectionResult:
        smap, win = self.anomaly_map(image, roi=roi, alignment=alignment)
        thr = self.threshold
        _, score, _, peak = cv2.minMaxLoc(smap)
        anomalous = score > thr
        fh, fw = image.shape[:2]
        w2f = win.to_frame(alignment)
        # Normalise on the small window map, then one warp + resize to the frame: the
        # heatmap is 0.5 exactly where the map crosses the threshold, so the mask is a
        # compare on it (full-frame float arithmetic would cost milliseconds per frame).
        heat_win = cv2.multiply(smap, 0.5 / thr)
        cv2.min(heat_win, 1.0, dst=heat_win)
        heat = _to_frame(heat_win, w2f, (fh, fw), self.params.long_side)
        if anomalous:
            mask = cv2.compare(heat, 0.5, cv2.CMP_GT)
            area = float(np.count_nonzero(smap > thr)) / float(smap.size)
        else:
            mask, area = np.zeros((fh, fw), np.uint8), 0.0
        px, py, _ = w2f @ (peak[0], peak[1], 1.0)
        anomalies = [Anomaly(BACKGROUND, 1.0 - area, ANOMALY_COLORS[BACKGROUND])]
        if area > 0:
            anomalies.append(Anomaly("anomaly", area, ANOMALY_COLORS["anomaly"]))
        return DetectionResult(
            is_anomalous=bool(anomalous),
            confidence=confidence_from_score(float(score), thr, confidence_scale(thr, self.training)),
            score=float(score),
            threshold=thr,
            anomalies=anomalies,
            model_id=self.model_id,
            model_version=self.model_version,
            model_hash=self.model_hash,
            anomaly_mask=mask,
            heatmap=heat,
            extra={"model_type": MODEL_TYPE, "peak_xy": [round(float(px), 1), round(float(py), 1)]},
        )

    # ------------------------------------------------------------------ training

    @classmethod
    def train(
        cls,
        images: Sequence[np.ndarray],
        *,
        roi: Roi | None = None,
        alignments: Sequence[np.ndarray | None] | None = None,
        params: PatchCoreParams | None = None,
        progress: Progress | None = None,
        backbone: OnnxBackbone | None = None,
    ) -> PatchCoreModel:
        """Learn the memory bank and the threshold from good images.

        ``alignments[i]`` maps image i onto the reference (the shape of the training images);
        ``roi`` (reference coordinates) becomes the model's default ROI. ``images`` is read
        twice (features, then held-out scores), so a lazy sequence keeps memory at the
        feature pool. ``progress(done, total)`` is called as work completes.
        """
        from station.detect.patchcore_train import train_patchcore

        return train_patchcore(cls, images, roi=roi, alignments=alignments, params=params or PatchCoreParams(),
                      progress=progress, backbone=backbone)

    # ------------------------------------------------------------------ persistence

    def _describe(self) -> dict[str, Any]:
        return {
            "model_type": MODEL_TYPE,
            "params": self.params.to_dict(),
            "threshold": self.threshold,
            "reference": {"shape": list(self.reference_shape), "dtype": str(self.dtype),
                          "bit_depth": self.bit_depth},
            "roi": self.roi.as_list(),
            "n_images": self.n_images,
            "backbone": {"file": self.backbone.path.name, "sha256": self.backbone.info.sha256},
        }

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {"bank": self.bank, "layer_scale": self.layer_scale}
        if self.projection is not None:
            arrays["projection"] = self.projection
        return arrays

    def _content_hash(self) -> str:
        h = hashlib.sha256(json.dumps(self._describe(), sort_keys=True).encode())
        for name, arr in sorted(self._arrays().items()):
            h.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()

    def to_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays and JSON-able metadata that :meth:`from_state` rebuilds the model from."""
        meta = {**self._describe(), "training": self.training, "created_at": self.created_at,
                "model_id": self.model_id, "model_hash": self.model_hash}
        return self._arrays(), meta

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> PatchCoreModel:
        """Rebuild a saved model; ValueError if its content hash or backbone does not match."""
        ref = meta["reference"]
        params = PatchCoreParams.from_dict(meta["params"])
        model = cls(
            bank=arrays["bank"], layer_scale=arrays["layer_scale"], projection=arrays.get("projection"),
            params=params, threshold=float(meta["threshold"]), reference_shape=tuple(ref["shape"]),
            dtype=ref["dtype"], bit_depth=int(ref["bit_depth"]), roi=Roi(*meta["roi"]),
            n_images=int(meta["n_images"]), training=meta.get("training", {}), created_at=meta["created_at"],
            model_id=meta["model_id"], model_version=str(meta.get("model_version", "")),
            backbone_sha256=meta["backbone"]["sha256"],
        )
        expected = meta.get("model_hash")
        if expected and expected != model.model_hash:
            raise ValueError(f"model content hash mismatch: recorded {expected}, computed {model.model_hash}")
        return model


# --------------------------------------------------------------------------- helpers


def _map_from_features(featurizer: PatchFeaturizer, nn: NearestNeighbours, image: np.ndarray, win: Window,
                       alignment: np.ndarray | None, max_value: float, sigma: float) -> np.ndarray:
    batch = to_input(window_image(image, win, alignment), win, max_value)
    feats, (gh, gw) = featurizer(batch, win)
    dist = nn.distances(feats).reshape(gh, gw)
    return _smooth(dist, win, featurizer.stride, sigma)


def _smooth(dist: np.ndarray, win: Window, stride: int, sigma: float) -> np.ndarray:
    gh, gw = dist.shape
    up = cv2.resize(dist, (gw * stride, gh * stride), interpolation=cv2.INTER_LINEAR)
    w, h = win.size
    up = up[:h, :w]
    if sigma > 0:
        up = cv2.GaussianBlur(up, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(up)


def _to_frame(smap: np.ndarray, w2f: np.ndarray, frame_shape: tuple[int, int], long_side: int) -> np.ndarray:
    """The window map in frame pixels (0 outside the ROI): warped onto a coarse frame grid
    at window resolution (the map is smooth at that scale), then resized up (a full-size
    float warp costs several ms)."""
    fh, fw = frame_shape
    f = min(1.0, long_side / max(fh, fw))
    gw, gh = max(1, int(round(fw * f))), max(1, int(round(fh * f)))
    sx, sy = fw / gw, fh / gh
    up = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])
    coarse_to_win = np.linalg.inv(w2f) @ up
    small = cv2.warpAffine(smap, coarse_to_win[:2], (gw, gh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if (gw, gh) == (fw, fh):
        return small
    return cv2.resize(small, (fw, fh), interpolation=cv2.INTER_LINEAR)

