"""A running station assembled from its config: store, camera, spec, model, cycle.

Headless (no Qt). The CLI drives it directly; the UI drives it through the same calls.
"""
from __future__ import annotations

import itertools
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from calibration.profile import ProfileStore
from calibration.roi import Roi
from calibration.spec import ProfileSpecChecker
from cloudsync.disk_guard import DiskGuard
from station.capture.base import CameraDriver, PartContext
from station.capture.factory import make_camera, trigger_mode
from station.config import LineStationConfig
from station.detect.base import Detector
from station.detect.registry import ModelRegistry, ModelStoreError
from station.detect.sagemaker_detector import from_config as sagemaker_from_config
from station.inspect.bootstrap import BootstrapError, ensure_profile, train_first_model
from station.inspect.cycle import CycleContext, InspectionCycle, InspectionOutcome
from station.inspect.decide import Decision, DecisionPolicy
from station.detect.grey_window import GreyWindow, WindowedDetector
from station.store.record import InspectionRecord
from station.store.station_store import StationStore

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

# Heatmaps are kept for the records a person will look at (review queue, rejects); for a
# passed part it can be recomputed from the raw image, and skipping it keeps the cycle fast.
HEATMAP_DECISIONS = frozenset({Decision.REJECT, Decision.REVIEW})


class StoreRecorder:
    """Turns a cycle outcome into the store's record (the cycle's InspectionStore)."""

    def __init__(self, store: StationStore) -> None:
        self.store = store

    def record(self, out: InspectionOutcome) -> str:
        det = out.detection
        frame = out.frame
        record = InspectionRecord(
            station=out.cycle.station,
            decision=out.decision.value,
            started_at=out.started_at,
            finished_at=time.time(),
            recipe=out.context.recipe or out.cycle.recipe,
            part_id=out.context.part_id,
            lot=out.context.lot,
            config_hash=out.cycle.config_hash,
            calibration_version=out.calibration_version,
            model_id=det.model_id if det else None,
            model_version=det.model_version if det else None,
            model_hash=det.model_hash if det else None,
            camera=out.to_json()["camera"],
            reason=out.reason,
            score=det.score if det else None,
            is_anomalous=det.is_anomalous if det else None,
            confidence=det.confidence if det else None,
            detection=det.to_json() if det else None,
            fault=out.fault,
            timings_ms=dict(out.timings_ms),
            spec_checks=out.spec_checks,
            bit_depth=frame.bit_depth if frame is not None else None,
            meta=self._meta(frame),
        )
        heatmap = det.heatmap if det is not None and out.decision in HEATMAP_DECISIONS else None
        return self.store.record_inspection(record, frame.image if frame is not None else None, heatmap)


    def _meta(self, frame) -> dict:
        """The frame's facts; an original file (X-ray TIFF / DICOM) is kept byte for byte in
        the store first, and the record names where (``meta.original.stored``)."""
        meta = dict(frame.meta) if frame is not None else {}
        original = meta.get("original")
        if original and original.get("path"):
            # the bytes read at the claim: the file in processing/ may have been touched since
            data = frame.original if frame.original is not None else Path(original["path"]).read_bytes()
            kept = self.store.images.put_original(data, original["ext"], original["sha256"])
            meta["original"] = {**{k: v for k, v in original.items() if k != "path"}, "stored": kept.relpath}
        return meta


def recorded_original(store: StationStore) -> Callable[[str], bool]:
    """Is an original file (by sha256) recorded? A watched folder asks after a restart about
    the files it had claimed; those are among the latest records, so only those are searched."""
    def recorded(sha256: str) -> bool:
        with store.reader.connect() as conn:
            return conn.exec_driver_sql(
                "SELECT 1 FROM (SELECT record FROM inspections ORDER BY id DESC LIMIT 1000) "
                "WHERE json_extract(record, '$.meta.original.sha256') = ? LIMIT 1", (sha256,)).first() is not None
    return recorded


def part_contexts(store: StationStore, lot: str, recipe: str = "") -> Iterator[PartContext]:
    """Part ids for a line that supplies none: ``<lot>-000123``, carrying on after a restart.

    Without ``recipe`` the cycle stamps each part with the recipe it runs when the part
    begins, so a recipe the line selected later (PLC, MES) is the one recorded."""
    prefix = f"{lot}-"
    start = store.part_counter(prefix) + 1
    for n in itertools.count(start):
        yield PartContext(part_id=f"{prefix}{n:06d}", lot=lot, recipe=recipe)


class StationRuntime:
    def __init__(self, cfg: LineStationConfig, data_dir: Path, store: StationStore, camera: CameraDriver,
                 checker: ProfileSpecChecker, detector: Detector, cycle: InspectionCycle) -> None:
        self.cfg = cfg
        self.data_dir = data_dir
        self.store = store
        self.camera = camera
        self.checker = checker
        self.detector = detector
        self.cycle = cycle
        self.disk_guard: DiskGuard | None = None
        self.line: Any = None  # the PLC / MES handshake (station.line.service.LineService) when configured

    @classmethod
    def open(cls, cfg: LineStationConfig, data_dir: Path, *, progress: Progress | None = None,
             arm: bool = True, line: bool = True) -> StationRuntime:
        """Open everything; on a fresh data dir calibrate and train first (sim camera).

        With a ``line`` section (and ``line=True``) the Modbus / OPC UA servers start too.
        """
        progress = progress or (lambda msg: log.info("%s", msg))
        data_dir = Path(data_dir)
        st = cfg.station
        store = StationStore(data_dir, plant=st.plant, line=st.line, station=st.station)
        camera = None
        try:
            camera = make_camera(cfg.camera)
            if hasattr(camera, "set_recorded_check"):  # a watched folder, after a restart
                camera.set_recorded_check(recorded_original(store))
            camera.open()
            roi = Roi(*cfg.recipe.roi) if cfg.recipe.roi else None
            overrides = (cfg.calibration.xray_tolerances if cfg.recipe_kind() == "xray"
                         else cfg.calibration.tolerances).model_dump(exclude_none=True)
            profile = ensure_profile(ProfileStore(data_dir / "calibration"), camera, cfg.recipe.name,
                                     roi=roi, count=cfg.calibration.calibration_images,
                                     auto=cfg.calibration.auto_calibrate, overrides=overrides,
                                     progress=progress, **cls._xray_calibration(cfg))
            detector = cls._load_detector(cfg, data_dir, camera, profile, progress)
            policy = DecisionPolicy(**cfg.recipe.decision.model_dump())
            cycle = InspectionCycle(
                camera, ProfileSpecChecker(profile), detector, StoreRecorder(store), policy,
                CycleContext(station=st.station, recipe=cfg.recipe.name, config_hash=cfg.config_hash(),
                             roi=profile.roi),
                trigger_mode=trigger_mode(cfg.camera), capture_timeout_s=cfg.camera.timeout_s,
                shadow=cls._load_shadow(cfg, data_dir, detector), shadow_timeout_s=cfg.lifecycle.shadow_timeout_s,
                shadow_every=cfg.lifecycle.shadow_every,
            )
            if hasattr(camera, "on_recorded"):  # a watched folder files a file away once recorded
                cycle.add_inspection_listener(camera.on_recorded)
            runtime = cls(cfg, data_dir, store, camera, ProfileSpecChecker(profile), detector, cycle)
            if arm:
                cycle.arm()
            # Disk quota policy: hold the line (never drop data) while the disk is nearly full.
            runtime.disk_guard = DiskGuard(data_dir, int(cfg.sync.min_free_disk_mb * 2**20)).attach(cycle)
            if line and cfg.line is not None:
                runtime._start_line()
            return runtime
        except BaseException:
            if camera is not None:
                camera.close()
            store.close()
            raise

    def _start_line(self) -> None:
        from station.line.service import LineService  # pymodbus / asyncua only when configured

        try:
            self.line = LineService.start(self, self.cfg.line)
        except BaseException:
            if self.disk_guard is not None:
                self.disk_guard.close()
            raise

    @staticmethod
    def _xray_calibration(cfg: LineStationConfig) -> dict:
        if cfg.recipe_kind() != "xray":
            return {}
        region = cfg.recipe.reference_region
        return {"kind": "xray", "reference_region": Roi(*region) if region else None}

    @staticmethod
    def _load_detector(cfg: LineStationConfig, data_dir: Path, camera: CameraDriver, profile,
                       progress: Progress) -> Detector:
        window = cfg.recipe.grey_window
        if window is not None and window.low >= profile.full_scale:
            raise BootstrapError(
                f"recipe.grey_window {window.low}..{window.high} lies above the {profile.bit_depth}-bit images "
                f"of camera {profile.camera_serial} (0..{profile.full_scale}): the model would see black")
        registry = ModelRegistry(data_dir / "models")
        wanted = cfg.detector.model
        if cfg.detector.type == "sagemaker" and cfg.detector.fallback == "none":
            return sagemaker_from_config(cfg.detector, None)
        if wanted != "active":
            local = registry.load(wanted)
        else:
            if registry.active() is None:
                det = cfg.detector
                if det.type == "patchcore":
                    model_type, params = "patchcore", {"long_side": det.long_side}
                else:  # variation, or the local fallback of a SageMaker endpoint
                    model_type, params = "variation", {"downscale": det.downscale}
                if window is not None:  # the model learns the windowed image, scaled by 16 bits
                    params["bit_depth"] = 16
                train_first_model(registry, camera, profile, count=det.train_images, progress=progress,
                                  model_type=model_type, params=params,
                                  preprocess=GreyWindow(window.low, window.high).apply if window else None,
                                  grey_window=[window.low, window.high] if window else None)
            local = registry.load_active()
        if cfg.recipe.grey_window is not None:
            local = WindowedDetector(local, GreyWindow(cfg.recipe.grey_window.low, cfg.recipe.grey_window.high))
        return sagemaker_from_config(cfg.detector, local) if cfg.detector.type == "sagemaker" else local

    @staticmethod
    def _load_shadow(cfg: LineStationConfig, data_dir: Path, active: Detector) -> Detector | None:
        """The registry's SHADOW model, if any; a shadow that cannot load never stops the line."""
        registry = ModelRegistry(data_dir / "models")
        shadow_id = registry.shadow() if cfg.lifecycle.run_shadow else None
        if shadow_id is None or shadow_id == active.model_id:
            return None
        try:
            return registry.load(shadow_id)
        except ModelStoreError as exc:
            log.warning("shadow model %s not run: %s", shadow_id, exc)
            return None

    def run(self, count: int | None = None, lot: str | None = None) -> Iterator[InspectionOutcome]:
        lot = lot or self.cfg.station.lot
        seek = getattr(self.camera, "seek", None)
        if seek is not None:  # a simulated line carries on with new parts after a restart
            seek(self.store.part_counter(f"{lot}-"))
        contexts = part_contexts(self.store, lot)
        return self.cycle.run(contexts, count=count)

    def close(self) -> None:
        if self.line is not None:  # first: no PLC trigger may start while the station closes
            self.line.close()
            self.line = None
        try:
            if self.cycle.state.value != "idle":
                try:
                    self.cycle.disarm()
                except Exception:  # closing must not fail on a half-broken camera
                    log.exception("disarm failed while closing")
            self.camera.close()
        finally:
            if self.disk_guard is not None:
                self.disk_guard.close()
            if self.cycle.shadow is not None:
                self.cycle.shadow.close()
            self.store.close()


def print_human(out: InspectionOutcome, stream=sys.stdout) -> None:
    """One readable line per inspection for the terminal."""
    det = out.detection
    score = f"score {det.score:6.3f}/{det.threshold:.3f} conf {det.confidence:.2f}" if det else " " * 28
    failed = [c["name"] for c in out.spec_checks if not c.get("passed", True)]
    if out.fault:
        extra = f"  fault: {out.fault['kind']}"
    elif failed:
        extra = f"  spec: {', '.join(failed)}"
    else:
        extra = ""
    truth = (out.frame.meta.get("sim") or {}) if out.frame is not None else {}
    if truth.get("defect"):
        extra += f"  (simulated {truth['defect']})"
    t = out.timings_ms
    print(f"{out.context.part_id:>16}  {out.decision.operator_text:<13} {score}  "
          f"{t.get('total', 0):6.1f} ms{extra}", file=stream, flush=True)


def print_summary(outcomes: list[InspectionOutcome], store: StationStore, stream=sys.stderr) -> None:
    """What a shift lead wants after a run: counts, yield, latency, what waits for sync."""
    if not outcomes:
        return
    counts = {d.value: 0 for d in Decision}
    for o in outcomes:
        counts[o.decision.value] += 1
    decided = counts["pass"] + counts["reject"]
    totals = sorted(o.timings_ms.get("total", 0.0) for o in outcomes if o.fault is None)
    p50 = totals[len(totals) // 2] if totals else float("nan")
    pending = store.outbox_counts().get("pending", 0)
    yield_txt = f"{100.0 * counts['pass'] / decided:.1f}%" if decided else "n/a"
    print(f"{len(outcomes)} parts: {counts['pass']} pass, {counts['reject']} reject, "
          f"{counts['review']} review, {counts['check_capture']} check capture; yield {yield_txt}; "
          f"cycle p50 {p50:.1f} ms; {store.count()} records in {store.data_dir}; "
          f"{pending} outbox rows waiting for sync", file=stream, flush=True)
