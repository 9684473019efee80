"""The station's one strict configuration schema, loaded from YAML.

Unknown keys are errors, camera and detector sections are discriminated unions on
``type``, and secrets never live in the file: a key that looks like a secret is refused
with a pointer to the environment variable that should carry it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SCHEMA_VERSION = 1
SECRET_WORDS = ("password", "secret", "token", "api_key", "apikey", "access_key", "private_key")
FAULT_NAMES = ("dim", "overexposed", "blur", "offset", "dropped")
DEFECT_KINDS = ("scratch", "spot", "missing_feature", "contamination")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StationConfig(_Strict):
    """Where this station sits; used in records and cloud keys."""

    plant: str = Field("plant1", pattern=r"^[A-Za-z0-9_.-]+$")
    line: str = Field("line1", pattern=r"^[A-Za-z0-9_.-]+$")
    station: str = Field("station1", pattern=r"^[A-Za-z0-9_.-]+$")
    lot: str = Field("LOT-0001", description="lot used when the line supplies none")


class _CameraBase(_Strict):
    trigger: Literal["software", "hardware_line", "external", "watched_folder"] = "software"
    timeout_s: float = Field(1.0, gt=0, le=60)
    exposure_us: float | None = Field(None, gt=0)
    gain_db: float | None = Field(None, ge=0)


class SimCameraConfig(_CameraBase):
    type: Literal["sim"]
    serial: str = "SIM-0001"
    width: int = Field(1280, ge=64, le=16384)
    height: int = Field(1024, ge=64, le=16384)
    pixel_format: Literal["Mono8", "Mono12", "Mono16", "BGR8"] = "Mono8"
    seed: int = 0
    defect_rate: float = Field(0.2, ge=0, le=1)
    defect_kinds: list[Literal["scratch", "spot", "missing_feature", "contamination"]] = list(DEFECT_KINDS)
    fault_rates: dict[Literal["dim", "overexposed", "blur", "offset", "dropped"], float] = {}

    @field_validator("fault_rates")
    @classmethod
    def _rates_are_probabilities(cls, v: dict[str, float]) -> dict[str, float]:
        for name, rate in v.items():
            if not 0 <= rate <= 1:
                raise ValueError(f"fault rate for {name!r} must be within 0..1, got {rate}")
        return v


class ReplayCameraConfig(_CameraBase):
    type: Literal["replay"]
    folder: Path
    serial: str = "REPLAY"
    loop: bool = False
    width: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=1)
    pixel_format: Literal["Mono8", "Mono12", "Mono16", "BGR8"] | None = None


class PylonCameraConfig(_CameraBase):
    type: Literal["pylon"]
    serial: str | None = None
    pixel_format: Literal["Mono8", "Mono10", "Mono12", "Mono16"] = "Mono8"
    width: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=1)
    emulation_image_folder: Path | None = None


class GenICamCameraConfig(_CameraBase):
    type: Literal["genicam"]
    cti: Path | None = None
    serial: str | None = None
    pixel_format: str | None = None
    width: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=1)


class SimXrayConfig(_Strict):
    """A simulated X-ray detector that writes generated 16-bit radiographs of a cast part
    into the watched folder the way vendor software does (demo, tests, bench)."""

    seed: int = 0
    rate_hz: float = Field(4.0, gt=0, le=200, description="radiographs written per second while armed")
    width: int = Field(384, ge=64, le=8192)
    height: int = Field(320, ge=64, le=8192)
    bits: Literal[12, 14, 16] = 16
    file_format: Literal["tiff", "dicom"] = "tiff"
    write: Literal["rename", "slow"] = Field("rename", description="temp name then rename, or slow writes in place")
    defect_rate: float = Field(0.2, ge=0, le=1, description="share of parts with porosity or an inclusion")
    corrupt_rate: float = Field(0.0, ge=0, le=1, description="share of files written damaged (truncated)")


class XrayFolderCameraConfig(_CameraBase):
    """Radiographs (16-bit TIFF, DICOM/DICONDE) that detector software drops into a folder."""

    type: Literal["xray_folder"]
    trigger: Literal["watched_folder"] = "watched_folder"
    folder: Path
    serial: str = Field("XRAY-0001", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    formats: list[Literal["tiff", "dicom", "png"]] = Field(["tiff", "dicom"], min_length=1)
    width: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=1)
    pixel_format: Literal["Mono8", "Mono10", "Mono12", "Mono16"] | None = None
    settle_s: float = Field(0.5, ge=0, le=60, description="a file written in place is complete after this long unchanged")
    poll_interval_s: float = Field(0.05, gt=0, le=5)
    after_inspection: Literal["move", "delete"] = Field("move", description="move to done/ or delete once recorded")
    ignore: list[str] = Field([], description="file name patterns left alone (e.g. '*.xml' sidecars)")
    sim: SimXrayConfig | None = Field(None, description="a simulated detector writes into the folder")


CameraConfig = Annotated[
    Union[SimCameraConfig, ReplayCameraConfig, PylonCameraConfig, GenICamCameraConfig, XrayFolderCameraConfig],
    Field(discriminator="type"),
]


class VariationDetectorConfig(_Strict):
    type: Literal["variation"]
    model: str = Field("active", description="a model id, or 'active' for the registry's active model")
    downscale: int = Field(2, ge=1, le=8)
    train_images: int = Field(40, ge=10, le=5000, description="good parts used when training on first run")


class PatchCoreDetectorConfig(_Strict):
    """The default anomaly model: EfficientNet-Lite0 patch features + coreset kNN (onnxruntime)."""

    type: Literal["patchcore"]
    model: str = Field("active", description="a model id, or 'active' for the registry's active model")
    train_images: int = Field(40, ge=10, le=5000, description="good parts used when training on first run")
    long_side: int = Field(320, ge=64, le=1024, description="the ROI's long side in model pixels")


class SageMakerDetectorConfig(_Strict):
    """A SageMaker endpoint (Lookout-for-Vision-shaped results) with the local model as fallback."""

    type: Literal["sagemaker"]
    endpoint_name: str = Field(..., pattern=r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
    region: str = "us-east-1"
    endpoint_url: str | None = Field(None, description="override, e.g. a local stand-in for tests")
    content_type: Literal["image/png", "image/jpeg"] = "image/png"
    connect_timeout_s: float = Field(1.0, gt=0, le=60)
    read_timeout_s: float = Field(2.0, gt=0, le=120)
    max_attempts: int = Field(1, ge=1, le=5, description="SDK attempts per image (the line cannot wait long)")
    fallback: Literal["local", "none"] = Field("local", description="answer with the local model when the endpoint fails")
    retry_after_s: float = Field(30.0, ge=0, le=3600, description="after a failure, use the fallback this long before trying the endpoint again")
    model: str = Field("active", description="the local fallback model: a model id or 'active'")
    downscale: int = Field(2, ge=1, le=8)
    train_images: int = Field(40, ge=10, le=5000)
    access_key_env: str | None = None
    secret_key_env: str | None = None


DetectorConfig = Annotated[Union[PatchCoreDetectorConfig, VariationDetectorConfig, SageMakerDetectorConfig],
                           Field(discriminator="type")]


class DecisionConfig(_Strict):
    """Confidence-based routing: sure defects are rejected, sure goods pass, the rest go to review."""

    reject_min_confidence: float = Field(0.75, ge=0.5, le=1)
    pass_min_confidence: float = Field(0.6, ge=0.5, le=1)


class ToleranceOverrides(_Strict):
    """Technician overrides of the limits derived at calibration (None = derived)."""

    brightness_low: float | None = Field(None, ge=0, le=1)
    brightness_high: float | None = Field(None, ge=0, le=1)
    clipping_max: float | None = Field(None, ge=0, le=1)
    contrast_min: float | None = Field(None, ge=0, le=1)
    focus_min_ratio: float | None = Field(None, ge=0)
    position_max_px: float | None = Field(None, ge=0)
    rotation_max_deg: float | None = Field(None, ge=0)
    noise_max: float | None = Field(None, ge=0, le=1)


class DisplayPresetConfig(_Strict):
    """A window / level preset the operator screen offers as one big button (display only:
    it never changes what is stored or what the model sees)."""

    name: str = Field(min_length=1, max_length=24)
    low: int = Field(ge=0, le=65535, description="grey value shown black")
    high: int = Field(ge=1, le=65535, description="grey value shown white")

    @model_validator(mode="after")
    def _low_below_high(self) -> DisplayPresetConfig:
        if self.high <= self.low:
            raise ValueError(f"preset {self.name!r}: high ({self.high}) must be above low ({self.low})")
        return self


class GreyWindowConfig(_Strict):
    """The grey levels of a 16-bit image the anomaly model looks at: ``low``..``high`` is
    mapped onto the model's whole input range (below and above are clipped)."""

    low: int = Field(ge=0, le=65534)
    high: int = Field(ge=1, le=65535)

    @model_validator(mode="after")
    def _low_below_high(self) -> GreyWindowConfig:
        if self.high <= self.low:
            raise ValueError(f"grey_window: high ({self.high}) must be above low ({self.low})")
        return self


class XrayToleranceOverrides(_Strict):
    """Technician overrides of the X-ray capture limits derived at calibration (None = derived)."""

    grey_low: float | None = Field(None, ge=0, le=1)
    grey_high: float | None = Field(None, ge=0, le=1)
    snr_min: float | None = Field(None, ge=0)
    saturation_max: float | None = Field(None, ge=0, le=1)
    underexposed_max: float | None = Field(None, ge=0, le=1)
    position_max_px: float | None = Field(None, ge=0)
    rotation_max_deg: float | None = Field(None, ge=0)


class RecipeConfig(_Strict):
    name: str = Field("demo", pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["camera", "xray"] | None = Field(
        None, description="which capture checks apply; None: xray for an xray_folder camera, else camera")
    grey_window: GreyWindowConfig | None = Field(
        None, description="16-bit grey levels mapped onto the model input (None: scaled by bit depth)")
    reference_region: tuple[int, int, int, int] | None = Field(
        None, description="X-ray: x, y, width, height of the region whose grey level and SNR are checked "
                          "(None: the flattest part of the ROI)")
    roi: tuple[int, int, int, int] | None = Field(None, description="x, y, width, height in reference pixels")
    decision: DecisionConfig = DecisionConfig()
    display_presets: list[DisplayPresetConfig] = Field(
        [], max_length=8, description="window / level presets for 16-bit (X-ray) images, first = default")

    @field_validator("roi")
    @classmethod
    def _roi_positive(cls, v: tuple[int, int, int, int] | None) -> tuple[int, int, int, int] | None:
        if v is not None and (v[0] < 0 or v[1] < 0 or v[2] <= 0 or v[3] <= 0):
            raise ValueError("roi needs x, y >= 0 and width, height > 0")
        return v

    @field_validator("display_presets")
    @classmethod
    def _preset_names_unique(cls, v: list[DisplayPresetConfig]) -> list[DisplayPresetConfig]:
        names = [p.name for p in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"display preset names must be unique, repeated: {', '.join(dup)}")
        return v


class CalibrationConfig(_Strict):
    auto_calibrate: bool = Field(True, description="calibrate from good parts on a fresh data dir (sim camera only)")
    calibration_images: int = Field(24, ge=5, le=1000)
    tolerances: ToleranceOverrides = ToleranceOverrides()
    xray_tolerances: XrayToleranceOverrides = XrayToleranceOverrides()


class MesRestConfig(_Strict):
    """MES write-back over HTTP: one JSON POST per result with an ``Idempotency-Key`` header."""

    url: str = Field(pattern=r"^https?://[^\s]+$", description="the MES endpoint that receives results")
    auth_header: str = Field("Authorization", pattern=r"^[A-Za-z0-9-]+$")
    auth_secret_env: str | None = Field(None, description="environment variable holding the auth header's value")
    timeout_s: float = Field(5.0, gt=0, le=120)


MES_RESULT_FIELDS = ("ResultId", "PartId", "State", "Verdict", "Timestamp")


class MesOpcUaConfig(_Strict):
    """MES write-back over OPC UA (OPC 40100 / 40001-101 style result): call ``method`` on the
    MES object (primary; it returns the disposition), or write ``nodes`` when no method is set."""

    endpoint: str = Field(pattern=r"^opc\.tcp://[^\s]+$")
    username: str | None = None
    password_env: str | None = Field(None, description="environment variable holding the password")
    namespace_uri: str | None = Field(None, description="namespace of browse names written without 'idx:'")
    object_path: list[str] = Field(["MES"], min_length=1, description="browse path under Objects")
    object_node_id: str | None = Field(None, description="NodeId of the MES object (instead of object_path)")
    method: str | None = "ReportResult"
    nodes: dict[Literal[MES_RESULT_FIELDS], str] = Field(
        {}, description="result field -> NodeId ('ns=2;s=...') or browse name under the object")
    timeout_s: float = Field(5.0, gt=0, le=120)

    @model_validator(mode="after")
    def _method_or_nodes(self) -> MesOpcUaConfig:
        if not self.method and not self.nodes:
            raise ValueError("set 'method' (e.g. ReportResult) or 'nodes' to write")
        if self.password_env and not self.username:
            raise ValueError("password_env needs a username")
        return self


class MesConfig(_Strict):
    """Where results are written back to the MES; each transport configured is delivered once."""

    rest: MesRestConfig | None = None
    opcua: MesOpcUaConfig | None = None

    @model_validator(mode="after")
    def _some_transport(self) -> MesConfig:
        if self.rest is None and self.opcua is None:
            raise ValueError("configure 'rest' and/or 'opcua' (or remove the 'mes' section)")
        return self


REVIEW_DEFECT_CLASSES = ("scratch", "spot", "missing_feature", "contamination", "other")


class ReviewConfig(_Strict):
    """The supervisor review tab: the defect classes offered (digit keys 1-9), per recipe."""

    defect_classes: list[Annotated[str, Field(pattern=r"^[a-z0-9_]{1,64}$")]] = Field(
        list(REVIEW_DEFECT_CLASSES), min_length=1, max_length=9)
    recipe_defect_classes: dict[str, list[Annotated[str, Field(pattern=r"^[a-z0-9_]{1,64}$")]]] = Field(
        {}, description="recipe name -> its own defect classes (else defect_classes)")
    include_check_capture: bool = Field(False, description="also queue capture faults for review")

    @model_validator(mode="after")
    def _classes_usable(self) -> ReviewConfig:
        for where, classes in [("defect_classes", self.defect_classes),
                               *((f"recipe_defect_classes.{r}", c) for r, c in self.recipe_defect_classes.items())]:
            if not 1 <= len(classes) <= 9:
                raise ValueError(f"{where}: between 1 and 9 classes (keys 1-9), got {len(classes)}")
            if len(set(classes)) != len(classes):
                raise ValueError(f"{where}: duplicate defect class in {classes}")
        return self

    def classes_for(self, recipe: str) -> list[str]:
        """The defect classes a supervisor may choose for parts of ``recipe``."""
        return list(self.recipe_defect_classes.get(recipe, self.defect_classes))


class UiConfig(_Strict):
    """The station screen (``linestation demo`` / ``run``): sign-in, kiosk, live view."""

    idle_signout_min: float = Field(15.0, gt=0, le=720, description="sign out after this many idle minutes")
    kiosk: bool = Field(False, description="fullscreen, no window frame (production)")
    live_view_fps: int = Field(25, ge=1, le=60, description="live image refresh rate")
    recent_results: int = Field(10, ge=1, le=40, description="results in the strip under the live image")
    run_rate_hz: float = Field(2.0, gt=0, le=100, description="parts/s when Start runs a software trigger")
    demo_mode: bool = Field(False, description="offer password-less demo operator/supervisor/technician")
    sync_stale_s: float = Field(120.0, gt=0, description="sync service counts as down after this silence")
    disk_warn_gb: float = Field(2.0, ge=0, description="warn when the data disk has less free space")
    shift_hours: float = Field(8.0, gt=0, le=24, description="shift counters cover this many hours")


class GateConfig(_Strict):
    """What an evaluation must show before ``linestation deploy`` switches to a model."""

    split: Literal["test", "validation"] = "test"
    min_image_auroc: float = Field(0.9, ge=0, le=1)
    min_recall: float = Field(0.9, ge=0, le=1)
    max_false_reject_rate: float = Field(0.1, ge=0, le=1)
    min_pixel_auroc: float | None = Field(None, ge=0, le=1)
    max_latency_ms_p99: float | None = Field(None, gt=0)
    max_regression: float = Field(0.02, ge=0, le=1, description="allowed drop against the active model")


class MonitorConfig(_Strict):
    """Drift monitoring over the most recent inspections (``linestation monitor``)."""

    window: int = Field(200, ge=10, le=100000, description="recent inspections looked at")
    ewma_lambda: float = Field(0.2, gt=0, le=1)
    ewma_l: float = Field(3.0, gt=0, le=10)
    min_points: int = Field(8, ge=2, le=10000)
    score_psi_alarm: float = Field(0.25, gt=0)
    score_ks_alarm: float = Field(0.3, gt=0, le=1)
    min_scores: int = Field(30, ge=5)
    disagreement_alarm: float = Field(0.2, ge=0, le=1)
    min_reviews: int = Field(10, ge=1)


class RetrainConfig(_Strict):
    """When ``linestation monitor`` says the model should be retrained."""

    min_new_labels: int = Field(50, ge=1, description="reviewed labels since the active model was made")
    on_drift: bool = True
    on_line_event: bool = True


class LifecycleConfig(_Strict):
    gate: GateConfig = GateConfig()
    monitor: MonitorConfig = MonitorConfig()
    retrain: RetrainConfig = RetrainConfig()
    run_shadow: bool = Field(True, description="run the registry's SHADOW model beside the active one")
    shadow_timeout_s: float = Field(0.5, gt=0, le=60, description="longest the record waits for the shadow result")
    shadow_every: int = Field(1, ge=1, le=1000, description="score every n-th part with the shadow (bounds its CPU cost)")


class AwsAccessConfig(_Strict):
    """How the sync service reaches one AWS service (or a local stand-in); secrets via env names."""

    region: str = "us-east-1"
    endpoint_url: str | None = Field(None, description="e.g. http://127.0.0.1:8333 for a local S3 server")
    access_key_id_env: str | None = Field(None, description="environment variable holding the access key id")
    secret_access_key_env: str | None = Field(None, description="environment variable holding the secret key")
    connect_timeout_s: float = Field(3.0, gt=0, le=60)
    read_timeout_s: float = Field(20.0, gt=0, le=600)
    workers: int = Field(2, ge=1, le=64, description="parallel deliveries to this sink")

    @model_validator(mode="after")
    def _key_pair(self) -> AwsAccessConfig:
        if (self.access_key_id_env is None) != (self.secret_access_key_env is None):
            raise ValueError("set both access_key_id_env and secret_access_key_env, or neither")
        return self


class S3SinkConfig(AwsAccessConfig):
    """Images and result documents to an S3 bucket."""

    enabled: bool = False
    bucket: str = Field("", pattern=r"^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    sse: Literal["none", "AES256", "aws:kms"] = "AES256"
    kms_key_id: str | None = None
    multipart_threshold_mb: float = Field(8.0, ge=1, le=5120, description="files above go up in parts")
    multipart_chunk_mb: float = Field(8.0, ge=5, le=5120)
    workers: int = Field(4, ge=1, le=64)

    @model_validator(mode="after")
    def _bucket_when_enabled(self) -> S3SinkConfig:
        if self.enabled and not self.bucket:
            raise ValueError("bucket is required when the s3 sink is enabled")
        return self


class StepFunctionsSinkConfig(AwsAccessConfig):
    """One workflow execution per inspection (execution name = inspection id)."""

    enabled: bool = False
    state_machine_arn: str = Field("", pattern=r"^$|^arn:aws[a-z-]*:states:")

    @model_validator(mode="after")
    def _arn_when_enabled(self) -> StepFunctionsSinkConfig:
        if self.enabled and not self.state_machine_arn:
            raise ValueError("state_machine_arn is required when the stepfunctions sink is enabled")
        return self


class SnsSinkConfig(AwsAccessConfig):
    """Alerts (reject / review / check capture) to an SNS topic, routed by message attributes."""

    enabled: bool = False
    topic_arn: str = Field("", pattern=r"^$|^arn:aws[a-z-]*:sns:")

    @model_validator(mode="after")
    def _arn_when_enabled(self) -> SnsSinkConfig:
        if self.enabled and not self.topic_arn:
            raise ValueError("topic_arn is required when the sns sink is enabled")
        return self


class SyncConfig(_Strict):
    """The background sync service (``linestation sync``). Default: queue only, no sinks."""

    s3: S3SinkConfig = S3SinkConfig()
    stepfunctions: StepFunctionsSinkConfig = StepFunctionsSinkConfig()
    sns: SnsSinkConfig = SnsSinkConfig()
    bandwidth_bytes_per_s: int | None = Field(None, ge=1024, description="upload cap over all sinks (None: no cap)")
    backoff_base_s: float = Field(1.0, gt=0, le=3600)
    backoff_max_s: float = Field(300.0, gt=0, le=86400)
    lease_s: float = Field(300.0, ge=5, le=86400, description="a claimed row goes back to pending after this")
    poll_interval_s: float = Field(1.0, gt=0, le=60, description="how often an idle sink looks for new rows")
    offline_after_failures: int = Field(3, ge=1, le=1000, description="consecutive failures before a sink is offline")
    probe_interval_s: float = Field(5.0, gt=0, le=3600, description="how often an offline sink is probed")
    min_free_disk_mb: float = Field(1024.0, ge=0, description="the station stops accepting parts below this")


class SelectableRecipeConfig(RecipeConfig):
    """A recipe the PLC (by number) or the MES (by name or number) can switch to."""

    number: int = Field(ge=1, le=65535, description="the recipe number the PLC writes (0 means 'keep')")


class LineModbusConfig(_Strict):
    """The Modbus TCP server the PLC polls and writes (register map: docs/line-handshake.md)."""

    host: str = Field("0.0.0.0", description="interface to listen on (127.0.0.1: this machine only)")
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=247, description="the Modbus unit (device) id the station answers as")


class LineOpcUaConfig(_Strict):
    """The OPC UA server the MES / line controller reads state and results from and calls methods on."""

    endpoint: str = Field("opc.tcp://0.0.0.0:4840/linestation", pattern=r"^opc\.tcp://[^\s/]+:\d+(/[^\s]*)?$")
    namespace: str = Field("urn:linestation:line", min_length=1)
    security: Literal["none", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"] = Field(
        "Basic256Sha256_SignAndEncrypt",
        description="message security; 'none' (nothing signed or encrypted, no passwords) must be chosen explicitly")
    anonymous: Literal["refuse", "read", "control"] = Field(
        "read", description="what a session without user name may do: refuse it, read only, or also write / call "
                            "(then the trusted client certificate is the proof)")
    pki_dir: str | None = Field(
        None, description="server certificate (own/), trusted client certificates (trusted/), refused ones "
                          "(rejected/); default <data dir>/opcua-pki")

    @model_validator(mode="after")
    def _someone_can_connect(self) -> LineOpcUaConfig:
        if self.security == "none" and self.anonymous == "refuse":
            raise ValueError("security 'none' accepts no user names (they would cross the network in clear), so "
                             "anonymous 'refuse' admits nobody: choose anonymous 'read' or 'control', or a "
                             "Basic256Sha256 security")
        return self


class LineConfig(_Strict):
    """The line handshake: how the PLC / MES triggers the station and reads its results."""

    modbus: LineModbusConfig | None = None
    opcua: LineOpcUaConfig | None = None
    result_timeout_ms: int = Field(500, ge=20, le=600000,
                                   description="a result or an error code is written within this time of a trigger")
    interlock_source: Literal["modbus", "opcua", "any"] = Field(
        "modbus", description="who may set the interlock (door open / shutter closed)")

    @model_validator(mode="after")
    def _some_transport(self) -> LineConfig:
        if self.modbus is None and self.opcua is None:
            raise ValueError("configure 'modbus' and/or 'opcua' (or remove the 'line' section)")
        return self
class AwsBatchConfig(_Strict):
    """``linestation batch --executor aws-batch``: where jobs go (the CloudFormation stack's
    BatchJobQueue / BatchJobDefinition outputs); flags override every key."""

    job_queue: str = Field(..., min_length=1, description="job queue name or ARN")
    job_definition: str = Field(..., min_length=1, description="job definition name[:revision] or ARN")
    region: str = "us-east-1"
    endpoint_url: str | None = Field(None, description="Batch API override, e.g. a local stand-in for tests")
    out: str | None = Field(None, pattern=r"^s3://", description="s3://bucket/prefix the runs write results/, summary/ and reports/ under")
    models_uri: str | None = Field(None, pattern=r"^s3://", description="s3://bucket[/prefix] for models/<id>/<version>/")
    images_per_shard: int = Field(2000, ge=1, le=1_000_000, description="shards = images / this, when --shards is not given")


class LineStationConfig(_Strict):
    schema_version: Literal[1]
    station: StationConfig = StationConfig()
    camera: CameraConfig
    detector: DetectorConfig = VariationDetectorConfig(type="variation")
    recipe: RecipeConfig = RecipeConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    mes: MesConfig | None = None  # no MES write-back unless configured
    sync: SyncConfig = SyncConfig()  # queue only until sinks are enabled
    ui: UiConfig = UiConfig()
    review: ReviewConfig = ReviewConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    recipes: list[SelectableRecipeConfig] = Field(
        [], description="recipes the line may switch to; 'recipe' is the start recipe and must be one of them")
    line: LineConfig | None = None  # no PLC / MES handshake unless configured
    aws_batch: AwsBatchConfig | None = None  # batch scale-out on AWS Batch (optional)

    @model_validator(mode="after")
    def _recipes_consistent(self) -> LineStationConfig:
        numbers = [r.number for r in self.recipes]
        names = [r.name for r in self.recipes]
        for what, seen in (("number", numbers), ("name", names)):
            dup = sorted({str(v) for v in seen if seen.count(v) > 1})
            if dup:
                raise ValueError(f"recipes: each recipe {what} must be unique, repeated: {', '.join(dup)}")
        if self.recipes and self.recipe.name not in names:
            raise ValueError(f"recipe: the start recipe {self.recipe.name!r} is not in 'recipes' ({', '.join(names)})")
        return self

    @model_validator(mode="after")
    def _trigger_supported(self) -> LineStationConfig:
        if self.camera.type == "sim" and self.camera.trigger not in ("software", "hardware_line"):
            raise ValueError("camera.trigger: the simulated camera supports 'software' and 'hardware_line'")
        if self.camera.type == "replay" and self.camera.trigger not in ("software", "watched_folder"):
            raise ValueError("camera.trigger: replay supports 'software' and 'watched_folder'")
        return self

    def recipe_kind(self) -> str:
        """``camera`` or ``xray``: which capture-spec checks the recipe gets."""
        if self.recipe.kind is not None:
            return self.recipe.kind
        return "xray" if self.camera.type == "xray_folder" else "camera"

    def config_hash(self) -> str:
        """A stable hash of the configuration that can change a verdict, stored with every
        inspection. Screen-only settings (``ui``) are left out: changing the idle sign-out
        time must not make two identical inspections look differently configured."""
        # where the PLC connects and where batch jobs run change no verdict
        data = self.model_dump(mode="json", exclude={"ui", "line", "aws_batch"})
        for rc in [data["recipe"], *data.get("recipes", [])]:
            rc.pop("display_presets", None)  # window / level buttons change what is shown, not a verdict
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------
# Loading with errors people can act on
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    line: int | None
    path: str
    value: Any
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        shown = json.dumps(self.value, default=str) if self.value is not _MISSING else "(missing)"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return f"{where}: {self.path or '<top level>'} = {shown}: {self.message}"


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


_MISSING: Any = _Missing()


class ConfigError(Exception):
    """A config file failed to load or validate; ``issues`` lists every problem."""

    def __init__(self, file: str, issues: list[ConfigIssue]):
        self.file = file
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def _line_index(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict:
    """Map key paths to 1-based line numbers from the YAML node tree."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[path + (key,)] = k.start_mark.line + 1
            _line_index(v, path + (key,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_index(v, path + (i,), out)
    return out


def _secret_issues(data: Any, file: str, lines: dict, path: tuple = ()) -> list[ConfigIssue]:
    issues = []
    if isinstance(data, dict):
        for k, v in data.items():
            p = path + (k,)
            if isinstance(k, str) and any(w in k.lower() for w in SECRET_WORDS) and not k.lower().endswith("_env"):
                issues.append(ConfigIssue(file, lines.get(p), ".".join(map(str, p)), "***",
                                          f"secrets are not read from the config file; put the value in an "
                                          f"environment variable and name it with '{k}_env'"))
            else:
                issues.extend(_secret_issues(v, file, lines, p))
    return issues


def _expected(err: dict) -> str:
    msg = err["msg"]
    ctx = err.get("ctx") or {}
    if err["type"] == "extra_forbidden":
        return "unknown key (check the spelling; unknown keys are not allowed)"
    if err["type"] == "missing":
        return "required key is missing"
    if err["type"] == "union_tag_invalid":
        return f"unknown type; expected one of {ctx.get('expected_tags')}"
    if err["type"] == "literal_error":
        return f"expected {ctx.get('expected')}"
    return msg.removeprefix("Value error, ")


def _pydantic_path(loc: tuple) -> tuple:
    # Discriminated unions insert the tag ('sim') into the location; drop it.
    out = []
    for i, part in enumerate(loc):
        if i > 0 and loc[i - 1] in ("camera", "detector") and isinstance(part, str) and part in (
            "sim", "replay", "pylon", "genicam", "xray_folder", "variation", "patchcore", "sagemaker"):
            continue
        out.append(part)
    return tuple(out)


def _lookup(data: Any, path: tuple) -> Any:
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return _MISSING
    return data


def parse_config(text: str, file: str = "<string>", base_dir: Path | None = None) -> LineStationConfig:
    """Parse and validate YAML text; raise ConfigError listing every problem."""
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(file, [ConfigIssue(file, mark.line + 1 if mark else None, "", _MISSING,
                                             f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    lines = _line_index(node) if node is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(file, [ConfigIssue(file, 1, "", data if data is not None else _MISSING,
                                             "expected a mapping of sections (schema_version, camera, ...)")])
    issues = _secret_issues(data, file, lines)
    version = data.get("schema_version")
    if version is not None and version != SCHEMA_VERSION:
        issues.append(ConfigIssue(file, lines.get(("schema_version",)), "schema_version", version,
                                  f"this LineStation reads schema_version {SCHEMA_VERSION}"))
    secret_paths = {i.path for i in issues}
    try:
        cfg = LineStationConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            path = _pydantic_path(tuple(err["loc"]))
            dotted = ".".join(map(str, path))
            if dotted in secret_paths or (path and path[0] == "schema_version" and version is not None):
                continue
            issues.append(ConfigIssue(file, lines.get(path) or lines.get(path[:-1]), dotted,
                                      _lookup(data, path), _expected(err)))
    else:
        if not issues:
            return _resolve_paths(cfg, base_dir)
    raise ConfigError(file, issues)


def _resolve_paths(cfg: LineStationConfig, base_dir: Path | None) -> LineStationConfig:
    """Relative folders in the file are relative to the file, not the working directory."""
    if base_dir is None:
        return cfg
    cam = cfg.camera
    for attr in ("folder", "emulation_image_folder", "cti"):
        value = getattr(cam, attr, None)
        if isinstance(value, Path) and not value.is_absolute():
            cam = cam.model_copy(update={attr: (base_dir / value).resolve()})
    return cfg.model_copy(update={"camera": cam})


def load_config(path: str | Path) -> LineStationConfig:
    """Load a YAML config file; raise ConfigError (with file, key path, value, expectation)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [ConfigIssue(str(path), None, "", _MISSING, f"cannot read file: {exc}")]) from None
    return parse_config(text, str(path), base_dir=path.resolve().parent)
