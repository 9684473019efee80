"""DICOM / DICONDE in and out: the only module that imports pydicom.

DICONDE (ASTM E2339) is DICOM for non-destructive evaluation: the same file format and
pixel module, with the patient attributes reused for the component (PatientName = component
name, PatientID = component id). A digital radiograph is a single grey frame, 8 to 16 bits
stored in 16 allocated, unsigned, MONOCHROME2 (bright = more signal) or MONOCHROME1
(inverted, turned into MONOCHROME2 here so every image in the station reads the same way).
"""
from __future__ import annotations

import io

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

# Digital X-Ray Image Storage - For Processing (the raw detector image, as DICONDE DR uses)
DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
# facts kept with the record (the DICONDE meaning in the comment)
_KEEP = {
    "Modality": "modality",
    "Manufacturer": "manufacturer",
    "StationName": "station_name",
    "PatientName": "component_name",  # DICONDE: component name
    "PatientID": "component_id",  # DICONDE: component id
    "SOPInstanceUID": "sop_instance_uid",
    "SOPClassUID": "sop_class_uid",
    "KVP": "kvp",
    "XRayTubeCurrent": "tube_current_ma",
    "ExposureTime": "exposure_time_ms",
    "DetectorID": "detector_id",
}


class DicomReadError(ValueError):
    """The bytes are not a usable DICOM image; the message is the reason kept with the file."""


def is_dicom(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def _jsonable(value) -> str | float | int:
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value) if type(value).__name__ in ("DSfloat", "DSdecimal", "IS") else str(value)
    except (TypeError, ValueError):
        return str(value)


def _int_attr(ds, keyword: str, default: int) -> int:
    """An integer attribute; a malformed value (an IS of ``"x"``) is a :class:`DicomReadError`
    naming it, not a ValueError that would leave the file stuck in processing/."""
    value = ds.get(keyword, default)
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        raise DicomReadError(f"malformed {keyword} {str(value)!r}: not an integer") from None


def read_dicom(data: bytes) -> tuple[np.ndarray, int, dict]:
    """Decode one grey frame; return (pixels, bits stored, facts worth keeping)."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:
        raise DicomReadError(f"not a readable DICOM file ({type(exc).__name__}: {exc})") from None
    if "PixelData" not in ds:
        raise DicomReadError("DICOM file without pixel data (not an image)")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomReadError(f"photometric interpretation {photometric or 'missing'}; an X-ray image is MONOCHROME1/2")
    frames = _int_attr(ds, "NumberOfFrames", 1)
    if frames != 1:
        raise DicomReadError(f"{frames} frames in one file; one radiograph per file expected")
    if _int_attr(ds, "PixelRepresentation", 0) != 0:
        raise DicomReadError("signed pixel data; X-ray detector images are unsigned")
    bits = _int_attr(ds, "BitsStored", _int_attr(ds, "BitsAllocated", 0))
    if not 1 <= bits <= 16:
        raise DicomReadError(f"{bits} bits stored; 1..16 supported")
    try:
        image = ds.pixel_array
    except Exception as exc:  # truncated pixel data, unsupported transfer syntax, ...
        raise DicomReadError(f"pixel data cannot be decoded ({type(exc).__name__}: {exc})") from None
    image = np.ascontiguousarray(image, dtype=np.uint16 if bits > 8 else np.uint8)
    if photometric == "MONOCHROME1":
        image = ((1 << bits) - 1 - image.astype(np.int32)).clip(0).astype(image.dtype)
    meta = {key: _jsonable(ds.get(tag)) for tag, key in _KEEP.items() if ds.get(tag) not in (None, "")}
    meta.update(photometric=photometric, bits_stored=bits,
                transfer_syntax=str(ds.file_meta.get("TransferSyntaxUID", "")))
    return image, bits, meta


def write_dicom(image: np.ndarray, *, bits_stored: int = 16, component_name: str = "", component_id: str = "",
                kvp: float | None = None, tube_current_ma: float | None = None, manufacturer: str = "LineStation",
                station_name: str = "") -> bytes:
    """A DICONDE-style digital radiograph (uncompressed, MONOCHROME2) of a uint16 image."""
    if image.dtype != np.uint16 or image.ndim != 2:
        raise ValueError(f"expected an HxW uint16 image, got {image.dtype} {image.shape}")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PROCESSING
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = DX_FOR_PROCESSING, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Manufacturer, ds.StationName = "DX", manufacturer, station_name
    ds.PatientName, ds.PatientID = component_name, component_id
    if kvp is not None:
        ds.KVP = f"{kvp:g}"
    if tube_current_ma is not None:
        ds.XRayTubeCurrent = int(round(tube_current_ma))
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
    ds.PixelData = np.ascontiguousarray(image).astype("<u2").tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
