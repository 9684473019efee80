"""First run on a fresh data dir: calibrate the capture spec and train the first model.

A real station is calibrated by a technician (the calibration wizard) from parts they
confirm as good. The demo and CI have a simulated camera that can render known-good parts,
so they bootstrap themselves from those in a few seconds.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from calibration.calibrate import calibrate
from calibration.profile import CalibrationProfile, ProfileStore
from calibration.roi import Roi
from calibration.spec import check_frame
from calibration.xray_spec import calibrate_xray
from station.capture.base import PIXEL_FORMAT_BITS
from station.capture.base import CameraDriver
from station.detect.registry import ModelRegistry
from station.detect.patchcore import PatchCoreModel, PatchCoreParams
from station.detect.variation import VariationModel, VariationParams

Progress = Callable[[str], None]


class BootstrapError(RuntimeError):
    """The station cannot start: it has no calibration or model and cannot make one itself."""


def _good_images(camera: CameraDriver, count: int, what: str, start: int = 0) -> list[np.ndarray]:
    render = getattr(camera, "good_images", None)
    if render is None:
        info = camera.describe()
        raise BootstrapError(
            f"no {what} for camera {info.serial}: this camera cannot supply known-good parts by "
            f"itself; calibrate the station with the calibration wizard first")
    return list(render(count, start=start))


def ensure_profile(
    profiles: ProfileStore,
    camera: CameraDriver,
    recipe: str,
    *,
    roi: Roi | None,
    count: int,
    auto: bool,
    overrides: dict[str, float | None],
    progress: Progress,
    kind: str = "camera",
    reference_region: Roi | None = None,
) -> CalibrationProfile:
    """The latest calibration profile of this camera and recipe, made from good parts if none.

    ``kind="xray"`` makes an X-ray profile (grey level, SNR, saturation, underexposure and
    position checks; ``overrides`` then name X-ray limits)."""
    serial = camera.describe().serial
    profile = profiles.latest(serial, recipe)
    if profile is not None:
        return profile
    if not auto:
        raise BootstrapError(f"camera {serial} has no calibration profile for recipe {recipe!r}; "
                             f"run the calibration wizard (auto_calibrate is off)")
    progress(f"calibrating {serial} / {recipe} from {count} good parts ...")
    images = _good_images(camera, count, "calibration profile")

    def step(done: int, total: int) -> None:
        if done == total or done % max(1, total // 4) == 0:
            progress(f"  calibration {done}/{total}")

    # the good images are bare arrays: a Mono12 camera's uint16 array would otherwise be
    # taken for 16-bit and every live 12-bit frame would fail its profile's bit depth
    bits = PIXEL_FORMAT_BITS.get(camera.describe().pixel_format)
    if kind == "xray":
        profile = calibrate_xray(images, serial, recipe, roi=roi, reference_region=reference_region,
                                 bit_depth=bits, overrides=overrides, created_by="bootstrap",
                                 notes="made on first run from simulated good radiographs", progress=step)
    else:
        profile = calibrate(images, serial, recipe, roi=roi, bit_depth=bits, overrides=overrides,
                            created_by="bootstrap", notes="made on first run from simulated good parts",
                            progress=step)
    saved = profiles.save(profile)
    progress(f"calibration profile {saved.label} saved")
    return saved


def train_first_model(
    registry: ModelRegistry,
    camera: CameraDriver,
    profile: CalibrationProfile,
    *,
    count: int,
    progress: Progress,
    model_type: str = "variation",
    params: dict | None = None,
    preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
    grey_window: list[int] | None = None,
) -> str:
    """Train the first model from good parts aligned to the profile's reference; activate it.

    ``model_type`` is ``patchcore`` (the default anomaly model) or ``variation`` (the
    golden-template model); ``params`` are that model's parameters. ``grey_window``
    (``[low, high]``, the window ``preprocess`` applies) is kept in the model's dataset
    facts: the model only means something on images seen through that window.
    """
    progress(f"training the {model_type} model from {count} good parts ...")
    # parts the calibration never saw, so the threshold is not fitted to the reference's own
    images: Sequence[np.ndarray] = _good_images(camera, count, "model", start=100_000)
    alignments = []
    for i, image in enumerate(images, 1):
        report = check_frame(profile, image)
        if not report.passed:
            failed = ", ".join(c.name for c in report.failed)
            raise BootstrapError(f"good part {i} fails its own capture spec ({failed}); "
                                 f"recalibrate before training")
        alignments.append(report.alignment)
    if preprocess is not None:  # e.g. the recipe's grey window: the model learns what it will see
        images = [preprocess(image) for image in images]
    if model_type == "patchcore":
        def step(done: int, total: int) -> None:
            if done == total or done % max(1, total // 4) == 0:
                progress(f"  training {done}/{total}")

        model = PatchCoreModel.train(images, roi=profile.roi, alignments=alignments,
                                     params=PatchCoreParams.from_dict(params or {}), progress=step)
    elif model_type == "variation":
        model = VariationModel.train(images, roi=profile.roi, alignments=alignments,
                                     params=VariationParams(**(params or {})))
    else:
        raise BootstrapError(f"cannot train a first model of type {model_type!r}")
    model_id = registry.save(model, dataset={"source": "bootstrap:good-parts", "count": len(images),
                                             "calibration": profile.label, "grey_window": grey_window})
    registry.set_active(model_id)
    progress(f"model {model_id} trained and active (threshold {model.threshold:.3f})")
    return model_id
