"""The onnxruntime adapter: runs the committed EfficientNet-Lite0 feature extractor.

This is the only module that imports onnxruntime. The ONNX file and its description
(``weights/efficientnet_lite0_features.json``: sha256, outputs and their strides) ship as
package data; :mod:`station.detect.export_backbone` regenerates both (torch needed there
only). The file is verified against the recorded sha256 before onnxruntime sees it, so a
truncated or swapped file fails at load with its path instead of producing other features.
"""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_ONNX = WEIGHTS_DIR / "efficientnet_lite0_features.onnx"


class BackboneError(RuntimeError):
    """The feature extractor cannot be loaded or run."""


@dataclass(frozen=True)
class BackboneInfo:
    path: Path
    sha256: str
    strides: dict[str, int]  # output name -> stride in input pixels
    channels: dict[str, int]
    multiple_of: int  # input H and W must be multiples of this


def _describe(path: Path) -> tuple[dict, str]:
    desc_path = path.with_suffix(".json")
    try:
        desc = json.loads(desc_path.read_text(encoding="utf-8"))
        outputs = desc["outputs"]
        expected = desc["sha256"]
    except FileNotFoundError as e:
        raise BackboneError(f"{desc_path}: missing (the description recorded beside {path.name})") from e
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BackboneError(f"{desc_path}: unreadable backbone description: {e!r}") from e
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BackboneError(f"{path}: cannot read the backbone: {e}") from e
    got = hashlib.sha256(data).hexdigest()
    if got != expected:
        raise BackboneError(
            f"{path}: content hash mismatch (recorded {expected} in {desc_path.name}, file {got}); "
            "reinstall LineStation or regenerate it with `python -m station.detect.export_backbone`"
        )
    if not isinstance(outputs, dict) or not outputs:
        raise BackboneError(f"{desc_path}: 'outputs' must map output names to stride/channels")
    return desc, got


class OnnxBackbone:
    """A loaded feature extractor: ``features(batch) -> {output name: NCHW float32}``.

    ``threads`` sets onnxruntime's intra-op pool (2 = the station's core budget); graph
    optimisations are all on. One session is shared by all callers; onnxruntime's ``run``
    is thread-safe.
    """

    def __init__(self, path: Path | str | None = None, *, threads: int = 2) -> None:
        self.path = Path(path) if path is not None else DEFAULT_ONNX
        desc, sha = _describe(self.path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # warnings about unused initialisers are noise here
        # No busy-waiting after a run: onnxruntime's pool otherwise spins on both cores for
        # a while and starves the nearest-neighbour matrix products that follow (4x slower).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for bad graphs
            raise BackboneError(f"{self.path}: onnxruntime cannot load the backbone: {e}") from e
        self._input = self._session.get_inputs()[0].name
        names = [o.name for o in self._session.get_outputs()]
        missing = [n for n in desc["outputs"] if n not in names]
        if missing:
            raise BackboneError(f"{self.path}: outputs {missing} described but not in the graph ({names})")
        self.info = BackboneInfo(
            path=self.path,
            sha256=sha,
            strides={k: int(v["stride"]) for k, v in desc["outputs"].items()},
            channels={k: int(v["channels"]) for k, v in desc["outputs"].items()},
            multiple_of=int(desc.get("input", {}).get("multiple_of", 1)),
        )

    def features(self, batch: np.ndarray, names: list[str] | tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """Run the network on ``batch`` (N x 3 x H x W float32 RGB in 0..1)."""
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected an N x 3 x H x W batch, got shape {batch.shape}")
        m = self.info.multiple_of
        if batch.shape[2] % m or batch.shape[3] % m:
            raise ValueError(f"input H and W must be multiples of {m}, got {batch.shape[2:]}")
        names = list(names or self.info.strides)
        try:
            out = self._session.run(names, {self._input: np.ascontiguousarray(batch, dtype=np.float32)})
        except Exception as e:
            raise BackboneError(f"{self.path}: inference failed: {e}") from e
        return dict(zip(names, out))


_CACHE: dict[tuple[str, int], OnnxBackbone] = {}
_CACHE_LOCK = threading.Lock()


def load_backbone(path: Path | str | None = None, *, threads: int = 2) -> OnnxBackbone:
    """A shared session per (file, threads): models loaded from one registry reuse it
    instead of paying the ~0.1 s session start and its memory again."""
    key = (str(Path(path) if path is not None else DEFAULT_ONNX), int(threads))
    with _CACHE_LOCK:
        bb = _CACHE.get(key)
        if bb is None:
            bb = _CACHE[key] = OnnxBackbone(path, threads=threads)
        return bb
