"""Which model and which calibration profiles a batch runs, resolved once in the parent.

``--model`` is a model id of the data dir's registry, ``active``, or a path to a model
directory in the registry layout (``model.json`` + ``model.npz``), e.g. one copied from
S3 ``models/<name>/<version>/`` into a container. Workers get a :class:`ModelRef` and load
the model themselves (once each), verified against its content hash by the registry.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibration.profile import CalibrationProfile, ProfileError, ProfileStore
from station.detect.base import Detector
from station.detect.registry import META_FILE, ModelRegistry, ModelStoreError

_PROFILE_LABEL = re.compile(r"^(?P<serial>[^/]+)/(?P<recipe>[^@]+)@v(?P<version>\d+)(?:#[0-9a-f]+)?$")


class ModelChoiceError(ValueError):
    """``--model`` / ``--profile`` name nothing loadable; the message says what was tried."""


@dataclass(frozen=True)
class ModelRef:
    """A model directory as (registry root, directory name): picklable for workers."""

    root: Path
    name: str
    model_id: str
    model_version: str
    model_type: str
    model_hash: str

    def load(self) -> Detector:
        return ModelRegistry(self.root).load(self.name)

    def to_json(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "model_version": self.model_version, "model_type": self.model_type,
                "model_hash": self.model_hash, "path": str(self.root / self.name)}


def resolve_model(spec: str, data_dir: Path) -> ModelRef:
    path = Path(spec).expanduser()
    if (path / META_FILE).is_file():
        root, name = path.resolve().parent, path.resolve().name
    else:
        root = Path(data_dir) / "models"
        if not root.is_dir():
            raise ModelChoiceError(f"--model {spec}: not a model directory, and {data_dir} has no model registry")
        registry = ModelRegistry(root)
        name = registry.active() if spec == "active" else spec
        if name is None:
            raise ModelChoiceError(f"--model active: no ACTIVE model in {root} (deploy one, or name a model id)")
    try:
        info = ModelRegistry(root).info(name)
    except ModelStoreError as exc:
        raise ModelChoiceError(f"--model {spec}: {exc}") from None
    meta = info.meta
    return ModelRef(root=root, name=name, model_id=str(meta.get("model_id") or name),
                    model_version=info.model_version, model_type=info.model_type,
                    model_hash=str(meta.get("model_hash", "")))


def use_threads(detector: Detector, threads: int) -> Detector:
    """Run ``detector``'s onnxruntime backbone with ``threads`` intra-op threads.

    The thread count is stored with a PatchCore model's parameters (and covered by its
    content hash), so it cannot be changed at load; a batch worker swaps in a session
    with its own budget instead (1 per worker, so N workers use N cores, not 2N).
    """
    backbone = getattr(detector, "backbone", None)
    featurizer = getattr(detector, "featurizer", None)
    if backbone is None or featurizer is None:
        return detector
    from station.detect.onnx_backbone import load_backbone

    session = load_backbone(backbone.path, threads=threads)
    detector.backbone = featurizer.backbone = session
    return detector


@dataclass(frozen=True)
class ProfileRef:
    """A stored calibration profile version (picklable), or its path for workers."""

    root: Path
    serial: str
    recipe: str
    version: int

    def load(self) -> CalibrationProfile:
        return ProfileStore(self.root).load(self.serial, self.recipe, self.version)

    @property
    def identity(self) -> str:
        return f"{self.serial}/{self.recipe}@v{self.version}"


def parse_profile(spec: str, data_dir: Path) -> ProfileRef:
    """``--profile``: a version directory (``.../<serial>/<recipe>/v<N>``) or a label
    ``SERIAL/RECIPE@vN`` in the data dir's calibration store."""
    path = Path(spec).expanduser()
    if path.is_dir() and re.match(r"^v\d+$", path.name):
        full = path.resolve()  # <root>/<serial>/<recipe>/v<N>
        ref = ProfileRef(full.parents[2], full.parent.parent.name, full.parent.name, int(full.name[1:]))
    else:
        m = _PROFILE_LABEL.match(spec)
        if not m:
            raise ModelChoiceError(f"--profile {spec}: neither a profile version directory nor SERIAL/RECIPE@vN")
        ref = ProfileRef(Path(data_dir) / "calibration", m["serial"], m["recipe"], int(m["version"]))
    try:
        ref.load()
    except (ProfileError, ValueError) as exc:
        raise ModelChoiceError(f"--profile {spec}: {exc}") from None
    return ref


def latest_profile(data_dir: Path, recipe: str) -> ProfileRef | None:
    """The data dir's newest calibration of ``recipe`` (the one the line uses from its next
    start); with several cameras calibrated for it, the most recently created one."""
    store = ProfileStore(Path(data_dir) / "calibration")
    best: tuple[str, ProfileRef] | None = None
    for ref in store.list():
        if ref.recipe != recipe or ref.version != store.versions(ref.camera_serial, recipe)[-1]:
            continue
        try:
            created = str(store.load(ref.camera_serial, recipe, ref.version).created_at)
        except (ProfileError, ValueError):
            continue
        cand = ProfileRef(store.root, ref.camera_serial, recipe, ref.version)
        if best is None or created > best[0]:
            best = (created, cand)
    return best[1] if best else None
