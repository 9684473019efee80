"""The simulated X-ray twin: generated 16-bit radiographs of a cast part, written into the
watched folder the way detector software does.

**The part.** An aluminium casting seen in transmission: a rounded plate with a thick boss,
two ribs and a through hole. Each pixel's signal follows Beer-Lambert,
``I = I0 * exp(-mu * t)``, with ``t`` the material thickness along the ray (mm), a tube
heel effect (I0 falls off a few percent across the field) and the detector's blur.

**The noise.** Quantum (Poisson) noise of ``dose`` photons per pixel at full beam, i.e.
sigma = sqrt(counts), plus a small read noise; the detector maps counts to grey values
with ``gain`` and an ``offset`` and clips at full scale (saturation).

**Defects.** Porosity: a cluster of spherical gas pores, less material along the ray, so
brighter spots. Inclusion: a dense foreign particle (much higher mu), a darker spot.

**Capture faults** (for the X-ray spec checks): ``underexposed`` (a fraction of the dose),
``saturated`` (too much gain: the thin parts and the open beam clip), ``noisy`` (a tenth of
the dose with ten times the gain: same grey level, a third of the SNR) and ``shifted``
(the part off its fixture position).

**The writer** (:class:`SimXrayWriter`) writes TIFF or DICONDE files either to a temporary
name and renames them into place, or slowly in place (a few chunks with pauses), and can
write damaged (truncated) files. :class:`SimXrayCamera` runs one on a thread while armed,
never more than ``backlog`` files ahead of the station, like a detector that waits for the line.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from station.capture.dicom_io import write_dicom
from station.capture.tiff_io import write_tiff
from station.capture.xray_camera import XrayFolderCamera, format_for_bits

FAULTS = ("underexposed", "saturated", "noisy", "shifted")
DEFECTS = ("porosity", "inclusion")
MU_ALUMINIUM = 0.06  # 1/mm, aluminium at ~150 kV (effective)
MU_INCLUSION = 0.6  # 1/mm, an iron-rich inclusion
MM_PER_PX = 0.25


@dataclass(frozen=True)
class SimXraySpec:
    """What the simulated detector produces (mirrors the ``camera.sim`` config section)."""

    seed: int = 0
    rate_hz: float = 4.0
    width: int = 384
    height: int = 320
    bits: int = 16
    file_format: str = "tiff"
    write: str = "rename"
    defect_rate: float = 0.2
    corrupt_rate: float = 0.0
    dose: float = 3000.0  # photons per pixel in the open beam
    open_beam: float = 0.8  # open-beam grey level, fraction of full scale
    offset: float = 0.01  # dark level, fraction of full scale
    read_noise: float = 3.0  # counts
    jitter_px: float = 1.5  # fixture play
    jitter_deg: float = 0.3


def _thickness(w: int, h: int) -> np.ndarray:
    """Material thickness (mm) of the casting, in its nominal pose, on a w x h grid."""
    t = np.zeros((h, w), np.float32)
    pw, ph = int(w * 0.72), int(h * 0.62)
    x0, y0 = (w - pw) // 2, (h - ph) // 2
    r = max(4, min(pw, ph) // 6)
    plate = np.zeros((h, w), np.uint8)
    cv2.rectangle(plate, (x0 + r, y0), (x0 + pw - r, y0 + ph), 1, -1)
    cv2.rectangle(plate, (x0, y0 + r), (x0 + pw, y0 + ph - r), 1, -1)
    for cx, cy in ((x0 + r, y0 + r), (x0 + pw - r, y0 + r), (x0 + r, y0 + ph - r), (x0 + pw - r, y0 + ph - r)):
        cv2.circle(plate, (cx, cy), r, 1, -1)
    t += plate * 8.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bx, by, br = x0 + pw * 0.3, y0 + ph * 0.5, ph * 0.28  # the boss: a dome up to +10 mm
    d2 = ((xx - bx) ** 2 + (yy - by) ** 2) / (br * br)
    t += np.where(d2 < 1, 10.0 * np.sqrt(np.clip(1 - d2, 0, 1)), 0).astype(np.float32) * plate
    for fx in (0.6, 0.8):  # two ribs across the plate
        rx = int(x0 + pw * fx)
        rib = np.zeros_like(plate)
        cv2.rectangle(rib, (rx - max(2, w // 80), y0 + ph // 8), (rx + max(2, w // 80), y0 + ph - ph // 8), 1, -1)
        t += rib * 6.0
    hole = np.zeros_like(plate)
    cv2.circle(hole, (int(x0 + pw * 0.7), int(y0 + ph * 0.3)), max(3, ph // 12), 1, -1)
    t[hole > 0] = 0.0
    return cv2.GaussianBlur(t, (0, 0), 1.2)  # cast edges are not knife sharp


class XrayPartRenderer:
    """Renders radiograph ``index`` of a seeded production run (the same index, the same image)."""

    def __init__(self, spec: SimXraySpec) -> None:
        self.spec = spec
        self.full_scale = (1 << spec.bits) - 1
        self._t = _thickness(spec.width, spec.height)
        w = spec.width
        self._heel = np.linspace(1.03, 0.97, w, dtype=np.float32)[None, :]  # anode heel effect

    def render(self, index: int, *, defect: str | None = "auto", fault: str | None = None) -> tuple[np.ndarray, dict]:
        """(uint16 image, ground truth). ``defect="auto"`` draws one at ``defect_rate``."""
        s = self.spec
        rng = np.random.default_rng([s.seed, index])
        if defect == "auto":
            defect = str(rng.choice(DEFECTS)) if rng.random() < s.defect_rate else None
        t = self._t.copy()
        extra_mu_t = np.zeros_like(t)
        where = None
        if defect is not None:
            where = self._defect(rng, defect, t, extra_mu_t)
        shift = 40.0 if fault == "shifted" else 0.0
        dx, dy = rng.uniform(-s.jitter_px, s.jitter_px, 2) + (shift, 0.0)
        angle = rng.uniform(-s.jitter_deg, s.jitter_deg)
        m = cv2.getRotationMatrix2D((s.width / 2, s.height / 2), angle, 1.0)
        m[:, 2] += (dx, dy)
        atten = MU_ALUMINIUM * t + extra_mu_t
        atten = cv2.warpAffine(atten, m, (s.width, s.height), flags=cv2.INTER_LINEAR, borderValue=0.0)
        dose, gain_k = s.dose, 1.0
        if fault == "underexposed":
            dose *= 0.15
        elif fault == "noisy":
            dose, gain_k = dose / 10.0, 10.0
        elif fault == "saturated":
            gain_k = 1.6
        counts = dose * self._heel * np.exp(-atten)
        counts = cv2.GaussianBlur(counts, (0, 0), 0.7)  # scintillator blur
        noisy = counts + rng.standard_normal(counts.shape, dtype=np.float32) * np.sqrt(counts + s.read_noise ** 2)
        gain = s.open_beam * self.full_scale / s.dose * gain_k
        grey = s.offset * self.full_scale + gain * noisy
        image = np.clip(np.rint(grey), 0, self.full_scale).astype(np.uint16)
        truth = {"index": index, "defect": defect, "fault": fault, "dx": round(float(dx), 2),
                 "dy": round(float(dy), 2), "angle_deg": round(float(angle), 3)}
        if where is not None:
            truth["defect_at"] = where
        return image, truth

    def _defect(self, rng: np.random.Generator, kind: str, t: np.ndarray, extra: np.ndarray) -> list[int]:
        ys, xs = np.nonzero(t > 7.0)  # inside the plate, away from its edges and the hole
        i = rng.integers(len(xs))
        cx, cy = int(xs[i]), int(ys[i])
        h, w = t.shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        if kind == "porosity":
            for _ in range(int(rng.integers(4, 9))):
                px, py = cx + rng.normal(0, 4), cy + rng.normal(0, 4)
                r = rng.uniform(1.8, 3.5)
                d2 = r * r - ((xx - px) ** 2 + (yy - py) ** 2)
                chord = 2.0 * np.sqrt(np.clip(d2, 0, None)) * MM_PER_PX * 6.0  # pores are deep
                np.subtract(t, np.minimum(chord, t * 0.6), out=t)
        else:
            r = rng.uniform(2.0, 4.0)
            d2 = r * r - ((xx - cx) ** 2 + (yy - cy) ** 2)
            extra += 2.0 * np.sqrt(np.clip(d2, 0, None)) * MM_PER_PX * MU_INCLUSION
        return [cx, cy]


class SimXrayWriter:
    """Writes radiographs into ``folder`` like detector software (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike, spec: SimXraySpec, *, prefix: str = "xray_",
                 slow_chunks: int = 4, slow_pause_s: float = 0.05, fsync: bool = True) -> None:
        self.folder = Path(folder)
        self.fsync = fsync  # vendor software that does not fsync is common too
        self.spec = spec
        self.prefix = prefix
        self.renderer = XrayPartRenderer(spec)
        self.slow_chunks, self.slow_pause_s = slow_chunks, slow_pause_s
        self._name = re.compile(re.escape(prefix) + r"(\d+)\.")

    @property
    def ext(self) -> str:
        return "dcm" if self.spec.file_format == "dicom" else "tif"

    def encode(self, image: np.ndarray, index: int, truth: dict | None = None) -> bytes:
        if self.spec.file_format == "dicom":
            return write_dicom(image, bits_stored=self.spec.bits, component_name="SIM-CASTING",
                               component_id=f"C{index:06d}", kvp=150, tube_current_ma=2,
                               station_name="SIM-XRAY")
        # the ground truth rides in the TIFF description, so demo and bench can score results
        return write_tiff(image, description=json.dumps({"sim": truth or {"index": index}}))

    def next_index(self) -> int:
        """One past the highest index found in the folder and its subfolders (restarts go on)."""
        top = -1
        for d in (self.folder, self.folder / "done", self.folder / "quarantine", self.folder / ".linestation" / "processing"):
            if d.is_dir():
                for name in os.listdir(d):
                    m = self._name.match(name)
                    if m:
                        top = max(top, int(m.group(1)))
        return top + 1

    def write_part(self, index: int, *, defect: str | None = "auto", fault: str | None = None,
                   corrupt: bool | None = None, write: str | None = None) -> Path:
        """Render part ``index`` and write it; return the final path."""
        image, truth = self.renderer.render(index, defect=defect, fault=fault)
        data = self.encode(image, index, truth)
        if corrupt is None:
            corrupt = np.random.default_rng([self.spec.seed, index, 7]).random() < self.spec.corrupt_rate
        if corrupt:
            data = data[: len(data) // 2]
        return self.write_bytes(f"{self.prefix}{index:06d}.{self.ext}", data, write or self.spec.write)

    def write_bytes(self, name: str, data: bytes, write: str = "rename") -> Path:
        final = self.folder / name
        if write == "rename":
            tmp = self.folder / f".{name}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
            os.replace(tmp, final)
            return final
        step = max(1, -(-len(data) // self.slow_chunks))
        with open(final, "wb") as f:
            for i in range(0, len(data), step):
                f.write(data[i:i + step])
                f.flush()
                if i + step < len(data):
                    time.sleep(self.slow_pause_s)
        return final


class SimXrayCamera(XrayFolderCamera):
    """The watched-folder driver with a simulated detector writing into the folder while armed."""

    def __init__(self, folder: str | os.PathLike, spec: SimXraySpec | None = None, *, backlog: int = 2,
                 **kwargs) -> None:
        spec = spec or SimXraySpec()
        Path(folder).mkdir(parents=True, exist_ok=True)
        if kwargs.get("expected_pixel_format") is None:  # the simulated detector's own depth
            kwargs["expected_pixel_format"] = format_for_bits(spec.bits)
        kwargs.setdefault("serial", "SIMXRAY-0001")
        kwargs.setdefault("settle_s", 0.2 if spec.write == "slow" else 0.0)
        super().__init__(folder, **kwargs)
        self.spec = spec
        self.backlog = backlog
        self.writer = SimXrayWriter(folder, spec)
        self._writer_stop = threading.Event()
        self._thread: threading.Thread | None = None

    def decode(self, claim):
        image, fmt, kind, facts = super().decode(claim)
        try:  # the simulated part's ground truth, when the writer put it in the description
            facts["sim"] = json.loads(facts.pop("description", ""))["sim"]
        except (ValueError, KeyError, TypeError):
            pass
        return image, fmt, kind, facts

    def grab(self, timeout_s: float = 1.0):
        frame = super().grab(timeout_s)
        truth = frame.meta.get("tiff", {}).pop("sim", None)
        if truth is not None:
            frame.meta["sim"] = truth
        return frame

    def good_images(self, count: int, start: int = 0) -> list[np.ndarray]:
        """Known-good radiographs (no defect, no fault) for calibration and first training."""
        clean = XrayPartRenderer(replace(self.spec, defect_rate=0.0))
        return [clean.render(10_000_000 + start + i, defect=None)[0] for i in range(count)]

    def arm(self, mode=None) -> None:
        super().arm() if mode is None else super().arm(mode)
        if self._thread is None or not self._thread.is_alive():
            self._writer_stop.clear()
            self._thread = threading.Thread(target=self._run_writer, name="sim-xray-writer", daemon=True)
            self._thread.start()

    def disarm(self) -> None:
        super().disarm()
        self._writer_stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
            self._thread = None

    def _waiting(self) -> int:
        try:
            return sum(1 for n in os.listdir(self.folder) if n.startswith(self.writer.prefix))
        except OSError:
            return 0

    def _run_writer(self) -> None:
        index = self.writer.next_index()
        period = 1.0 / self.spec.rate_hz
        while not self._writer_stop.is_set():
            if self._waiting() < self.backlog:
                self.writer.write_part(index)
                index += 1
            self._writer_stop.wait(period)
