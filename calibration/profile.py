"""Calibration profiles: the golden reference, ROI and capture-spec limits of one camera
and recipe, stored as immutable numbered versions.

A profile is what :func:`calibration.calibrate.calibrate` builds from good parts and what
:func:`calibration.spec.check_frame` checks every frame against. On disk::

    <root>/<camera serial>/<recipe>/v<N>/profile.json     limits, ROI, baseline statistics
    <root>/<camera serial>/<recipe>/v<N>/reference.png    golden reference (lossless; 16-bit stays 16-bit)

A version directory is written once (temp dir + fsync + rename) and never changed; a
changed limit or a recalibration is a new version. Every inspection record names the
profile it was checked against by :attr:`CalibrationProfile.identity` ("SIM-0001/demo@v3")
and :attr:`CalibrationProfile.content_hash`.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, NamedTuple

import cv2
import numpy as np
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from calibration.roi import Roi
from calibration.xray_limits import XraySpec
from station.durable import fsync_dir, write_synced

PROFILE_FILE = "profile.json"
REFERENCE_FILE = "reference.png"
# Serials and recipe names become directory names: no separators, no leading dot.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_VERSION_DIR = re.compile(r"^v([1-9][0-9]*)$")


class ProfileError(Exception):
    """Base of everything the profile store raises."""


class ProfileNotFound(ProfileError, LookupError):
    """No profile (or no such version) for a camera and recipe."""


class CorruptProfileError(ProfileError, ValueError):
    """A stored profile cannot be read back; the message names the file and what is wrong."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tolerances(_Strict):
    """Pass limits of each capture-spec check. All "fraction" values are of full scale.

    :func:`calibration.calibrate.calibrate` derives them from good images; the defaults
    here are only generic fall-backs. A technician may override any of them
    (:meth:`CalibrationProfile.with_tolerances`); the names match the station config's
    ``calibration.tolerances`` section.
    """

    brightness_low: float = Field(0.15, ge=0, le=1, description="min ROI mean, fraction of full scale")
    brightness_high: float = Field(0.85, ge=0, le=1, description="max ROI mean, fraction of full scale")
    clipping_max: float = Field(0.01, ge=0, le=1, description="max share of ROI pixels at 0 or full scale")
    contrast_min: float = Field(0.10, ge=0, le=1, description="min p95-p5 spread of the ROI, fraction of full scale")
    focus_min_ratio: float = Field(0.5, ge=0, description="min sharpness relative to the reference's")
    position_max_px: float = Field(10.0, ge=0, description="max |dx| and |dy| against the reference, px")
    rotation_max_deg: float = Field(1.0, ge=0, description="max |rotation| against the reference, degrees")
    noise_max: float = Field(0.02, ge=0, le=1, description="max noise sigma, fraction of full scale")
    registration_min: float = Field(
        0.5, ge=-1, le=1, description="min registration quality (correlation); below it the part is 'not found'"
    )

    @model_validator(mode="after")
    def _ordered(self) -> Tolerances:
        if self.brightness_low >= self.brightness_high:
            raise ValueError(
                f"brightness_low ({self.brightness_low}) must be below brightness_high ({self.brightness_high})"
            )
        return self


class Stat(_Strict):
    """Summary of one measured value over the calibration images."""

    n: int
    mean: float
    std: float
    min: float
    max: float
    median: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Stat:
        v = np.asarray(list(values), dtype=np.float64)
        if v.size == 0:
            raise ValueError("no values")
        return cls(
            n=int(v.size),
            mean=float(v.mean()),
            std=float(v.std(ddof=1)) if v.size > 1 else 0.0,
            min=float(v.min()),
            max=float(v.max()),
            median=float(np.median(v)),
        )


class Baseline(_Strict):
    """What the good images measured; the tolerances were derived from these."""

    n_images: int = Field(ge=1)
    brightness: Stat
    clipping: Stat
    contrast: Stat
    focus: Stat  # sharpness relative to reference_sharpness
    noise: Stat
    position: Stat  # max(|dx|, |dy|) against the final reference, px
    rotation: Stat  # |angle| against the final reference, degrees
    registration_quality: Stat
    reference_sharpness: float = Field(gt=0, description="denominator of the focus ratio")
    image_sha256: list[str] = Field(default_factory=list, description="content hashes of the good images")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def array_sha256(image: np.ndarray) -> str:
    """Content hash of pixel data (dtype and shape included)."""
    h = hashlib.sha256(f"{image.dtype.str}:{'x'.join(map(str, image.shape))}:".encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()


def encode_png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:  # pragma: no cover - cv2 encodes any uint8/uint16 1- or 3-channel image
        raise ProfileError(f"could not encode a {image.dtype} {image.shape} image as PNG")
    return buf.tobytes()


class CalibrationProfile(BaseModel):
    """One version of the capture spec of a camera + recipe (immutable).

    ``version`` is 0 until :meth:`ProfileStore.save` assigns 1, 2, 3, ...
    ``reference`` is the golden reference image (HxW or HxWx3 BGR, uint8 or uint16, as the
    camera delivers it), in whose pixel coordinates ``roi`` and all registration results are.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    schema_version: Literal[1] = 1
    camera_serial: str = Field(pattern=NAME_PATTERN)
    recipe: str = Field(pattern=NAME_PATTERN)
    version: int = Field(0, ge=0)
    parent_version: int | None = Field(None, ge=1, description="the version this one was derived from")
    created_at: AwareDatetime = Field(default_factory=_utcnow)
    created_by: str = ""
    notes: str = ""
    bit_depth: int = Field(ge=1, le=16, description="bits used per pixel (Mono12 in uint16: 12)")
    roi: Roi
    tolerances: Tolerances = Tolerances()
    baseline: Baseline | None = None
    xray: XraySpec | None = Field(None, description="an X-ray recipe's capture spec (replaces the camera checks)")
    reference: np.ndarray = Field(exclude=True, repr=False)

    _hash: str | None = PrivateAttr(None)
    _ref_sha: str | None = PrivateAttr(None)
    _grey: np.ndarray | None = PrivateAttr(None)
    _compiled: Any = PrivateAttr(None)  # calibration.spec's per-profile precomputation

    @field_validator("reference", mode="before")
    @classmethod
    def _check_reference(cls, v: Any) -> np.ndarray:
        if not isinstance(v, np.ndarray):
            raise ValueError(f"reference must be a numpy array, got {type(v).__name__}")
        if v.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"reference must be uint8 or uint16, got {v.dtype}")
        if not (v.ndim == 2 or (v.ndim == 3 and v.shape[2] == 3)) or v.size == 0:
            raise ValueError(f"reference must be a non-empty HxW or HxWx3 image, got shape {v.shape}")
        if not v.flags.writeable and v.flags.c_contiguous and v.base is None:
            return v  # already a frozen copy (another profile's): share it
        out = np.ascontiguousarray(v).copy()
        out.flags.writeable = False
        return out

    @model_validator(mode="after")
    def _consistent(self) -> CalibrationProfile:
        bits = self.reference.dtype.itemsize * 8
        if self.bit_depth > bits or (bits == 16 and self.bit_depth <= 8):
            raise ValueError(f"bit_depth {self.bit_depth} does not fit a {self.reference.dtype} reference")
        if not self.roi.fits(self.reference.shape):
            h, w = self.reference.shape[:2]
            raise ValueError(f"roi {self.roi.as_list()} does not fit the {w}x{h} reference")
        return self

    # --- identity ----------------------------------------------------------------------
    @property
    def identity(self) -> str:
        """``"<serial>/<recipe>@v<N>"`` (``@unsaved`` before the store assigned a version)."""
        v = f"v{self.version}" if self.version else "unsaved"
        return f"{self.camera_serial}/{self.recipe}@{v}"

    @property
    def content_hash(self) -> str:
        """sha256 of ``profile.json`` followed by ``reference.png`` (as stored)."""
        if self._hash is None:
            self._hash = hashlib.sha256(self.to_json_bytes() + encode_png(self.reference)).hexdigest()
        return self._hash

    @property
    def label(self) -> str:
        """Identity plus short content hash, e.g. ``"SIM-0001/demo@v3#1f2e3d4c5b6a"``."""
        return f"{self.identity}#{self.content_hash[:12]}"

    @property
    def reference_sha256(self) -> str:
        if self._ref_sha is None:
            self._ref_sha = array_sha256(self.reference)
        return self._ref_sha

    # --- image facts -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the reference."""
        return int(self.reference.shape[0]), int(self.reference.shape[1])

    @property
    def channels(self) -> int:
        return 1 if self.reference.ndim == 2 else 3

    @property
    def full_scale(self) -> int:
        return (1 << self.bit_depth) - 1

    @property
    def reference_grey(self) -> np.ndarray:
        if self._grey is None:
            ref = self.reference
            grey = cv2.cvtColor(ref, cv2.COLOR_BGR2GRAY) if ref.ndim == 3 else ref
            grey.flags.writeable = False
            self._grey = grey
        return self._grey

    # --- derivation --------------------------------------------------------------------
    def with_tolerances(self, **changes: float | None) -> CalibrationProfile:
        """A new (unsaved) profile with some limits overridden; ``None`` values are ignored.

        ``profile.with_tolerances(**config.calibration.tolerances.model_dump())`` applies the
        station config's overrides. Unknown names or inconsistent limits raise ValueError.
        """
        update = {k: v for k, v in changes.items() if v is not None}
        tolerances = Tolerances.model_validate({**self.tolerances.model_dump(), **update})
        return self._derive(tolerances=tolerances)

    def _derive(self, **update: Any) -> CalibrationProfile:
        data = {name: getattr(self, name) for name in type(self).model_fields}
        data.update(version=0, parent_version=self.version or self.parent_version, created_at=_utcnow())
        data.update(update)
        return CalibrationProfile.model_validate(data)

    # --- serialisation -----------------------------------------------------------------
    def to_json_bytes(self) -> bytes:
        """The exact bytes of ``profile.json``."""
        doc = self.model_dump(mode="json", exclude={"reference"})
        if doc.get("xray") is None:  # camera profiles stay byte for byte what they were
            doc.pop("xray", None)
        doc["reference"] = {
            "file": REFERENCE_FILE,
            "shape": list(self.reference.shape),
            "dtype": str(self.reference.dtype),
            "sha256": self.reference_sha256,
        }
        return (json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CalibrationProfile):
            return NotImplemented
        return self.to_json_bytes() == other.to_json_bytes()

    def __hash__(self) -> int:
        return hash((self.camera_serial, self.recipe, self.version, self.reference_sha256))


class _ReferenceInfo(_Strict):
    file: Literal["reference.png"] = REFERENCE_FILE
    shape: list[int]
    dtype: Literal["uint8", "uint16"]
    sha256: str


class ProfileRef(NamedTuple):
    camera_serial: str
    recipe: str
    version: int

    @property
    def identity(self) -> str:
        return f"{self.camera_serial}/{self.recipe}@v{self.version}"


def _check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not re.match(NAME_PATTERN, value):
        raise ValueError(f"{kind} {value!r} is not usable as a directory name (allowed: {NAME_PATTERN})")
    return value




def _format_validation(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {where}: {e['msg']}")
    return "\n".join(lines)


@dataclass(frozen=True)
class ProfileStore:
    """Numbered, immutable profile versions under ``root/<serial>/<recipe>/v<N>/``."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def recipe_dir(self, camera_serial: str, recipe: str) -> Path:
        return self.root / _check_name("camera serial", camera_serial) / _check_name("recipe", recipe)

    def path(self, camera_serial: str, recipe: str, version: int) -> Path:
        return self.recipe_dir(camera_serial, recipe) / f"v{int(version)}"

    def versions(self, camera_serial: str, recipe: str) -> list[int]:
        """Saved versions, ascending (temp dirs of saves in progress are not versions)."""
        d = self.recipe_dir(camera_serial, recipe)
        if not d.is_dir():
            return []
        found = (_VERSION_DIR.match(p.name) for p in d.iterdir() if p.is_dir())
        return sorted(int(m.group(1)) for m in found if m)

    def list(self) -> list[ProfileRef]:
        """Every stored version, sorted by serial, recipe and version."""
        refs: list[ProfileRef] = []
        if not self.root.is_dir():
            return refs
        for serial_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and re.match(NAME_PATTERN, p.name)):
            for recipe_dir in sorted(p for p in serial_dir.iterdir() if p.is_dir() and re.match(NAME_PATTERN, p.name)):
                versions = self.versions(serial_dir.name, recipe_dir.name)
                refs += [ProfileRef(serial_dir.name, recipe_dir.name, v) for v in versions]
        return refs

    def latest(self, camera_serial: str, recipe: str) -> CalibrationProfile | None:
        """The highest saved version, or None when this camera and recipe were never calibrated."""
        versions = self.versions(camera_serial, recipe)
        return self.load(camera_serial, recipe, versions[-1]) if versions else None

    def save(self, profile: CalibrationProfile) -> CalibrationProfile:
        """Store ``profile`` as the next version and return it with that version set.

        Never overwrites: the version directory appears in one rename, and when another
        writer took the number first the save moves on to the next free one.
        """
        recipe_dir = self.recipe_dir(profile.camera_serial, profile.recipe)
        recipe_dir.mkdir(parents=True, exist_ok=True)
        png = encode_png(profile.reference)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=recipe_dir))
        try:
            write_synced(tmp / REFERENCE_FILE, png)
            version = max(self.versions(profile.camera_serial, profile.recipe), default=0) + 1
            while True:
                saved = profile.model_copy(update={"version": version})
                saved._hash = saved._compiled = None  # both depend on the version
                body = saved.to_json_bytes()
                write_synced(tmp / PROFILE_FILE, body)
                fsync_dir(tmp)
                target = recipe_dir / f"v{version}"
                if not target.exists():
                    try:
                        os.rename(tmp, target)
                        break
                    except OSError as exc:  # lost a race for this number
                        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                            raise
                version += 1
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(recipe_dir)
        for name in (PROFILE_FILE, REFERENCE_FILE):
            os.chmod(target / name, 0o444)  # a hint to people; the store never writes twice
        saved._hash = hashlib.sha256(body + png).hexdigest()
        return saved

    def load(self, camera_serial: str, recipe: str, version: int) -> CalibrationProfile:
        """Read one version back; raises ProfileNotFound or CorruptProfileError (naming the file)."""
        vdir = self.path(camera_serial, recipe, version)
        json_path, png_path = vdir / PROFILE_FILE, vdir / REFERENCE_FILE
        try:
            body = json_path.read_bytes()
        except FileNotFoundError:
            have = self.versions(camera_serial, recipe)
            raise ProfileNotFound(
                f"no calibration profile {camera_serial}/{recipe}@v{version} ({json_path} missing); "
                f"stored versions: {have or 'none'}"
            ) from None
        try:
            doc = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            raise CorruptProfileError(
                f"{json_path}: not valid JSON{where} ({exc.__class__.__name__}: "
                f"{getattr(exc, 'msg', exc)}); the file is damaged or truncated"
            ) from None
        if not isinstance(doc, dict):
            raise CorruptProfileError(f"{json_path}: expected a JSON object, got {type(doc).__name__}")
        try:
            info = _ReferenceInfo.model_validate(doc.pop("reference", None))
        except ValidationError as exc:
            raise CorruptProfileError(f"{json_path}: bad 'reference' entry:\n{_format_validation(exc)}") from None
        try:
            png = png_path.read_bytes()
        except FileNotFoundError:
            raise CorruptProfileError(f"{png_path}: reference image missing") from None
        image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED) if png else None
        if image is None:
            raise CorruptProfileError(f"{png_path}: not a readable PNG (damaged or truncated)")
        if list(image.shape) != info.shape or str(image.dtype) != info.dtype or array_sha256(image) != info.sha256:
            raise CorruptProfileError(
                f"{png_path}: does not match {json_path.name} (expected {info.dtype} {info.shape} "
                f"sha256 {info.sha256[:12]}, got {image.dtype} {list(image.shape)} sha256 {array_sha256(image)[:12]})"
            )
        try:
            profile = CalibrationProfile.model_validate({**doc, "reference": image})
        except ValidationError as exc:
            raise CorruptProfileError(f"{json_path}: invalid calibration profile:\n{_format_validation(exc)}") from None
        if (profile.camera_serial, profile.recipe, profile.version) != (camera_serial, recipe, int(version)):
            raise CorruptProfileError(
                f"{json_path}: holds {profile.identity}, but sits where {camera_serial}/{recipe}@v{version} belongs"
            )
        profile._ref_sha = info.sha256
        profile._hash = hashlib.sha256(body + png).hexdigest()
        return profile
