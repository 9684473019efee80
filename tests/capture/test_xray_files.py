"""DICOM / DICONDE and 16-bit TIFF files through the watched-folder driver, pixel for pixel.

The DICOM files are written here with pydicom itself (not with the station's writer), the
way a detector vendor's software would: a plain 16-bit MONOCHROME2 image, a DICONDE-style
digital radiograph with its component and exposure attributes, 12 bits stored, MONOCHROME1.
"""
from __future__ import annotations

import io

import cv2
import numpy as np
import pydicom
import pytest
import tifffile
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from station.capture.base import BadImage, TriggerMode
from station.capture.xray_camera import XrayFolderCamera
from xray_helpers import write_file

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"


def pixels(bits: int = 16, shape=(96, 128), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 1 << bits, shape, dtype=np.uint32).astype(np.uint16)
    img[0, 0], img[0, 1] = 0, (1 << bits) - 1  # both ends of the range
    return img


def dicom_bytes(image: np.ndarray, *, bits: int = 16, photometric: str = "MONOCHROME2",
                sop_class: str = SECONDARY_CAPTURE, samples: int = 1, **attrs) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality = attrs.pop("Modality", "OT")
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.Rows, ds.Columns = image.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = samples, photometric
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    ds.PixelData = np.ascontiguousarray(image).astype("<u2").tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture
def cam(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    c = XrayFolderCamera(inbox, serial="XR-F", formats=("tiff", "dicom"), poll_interval_s=0.005, settle_s=0.0)
    c.open()
    c.arm(TriggerMode.WATCHED_FOLDER)
    return c


def land(cam: XrayFolderCamera, name: str, data: bytes):
    write_file(cam.folder, name, data)
    return cam.grab(2.0)


def test_dicom_16_bit_monochrome2_is_pixel_exact(cam):
    image = pixels(16)
    frame = land(cam, "plain.dcm", dicom_bytes(image))
    assert frame.image.dtype == np.uint16 and frame.pixel_format == "Mono16" and frame.bit_depth == 16
    assert np.array_equal(frame.image, image)
    assert frame.meta["original"]["format"] == "dicom" and frame.meta["dicom"]["photometric"] == "MONOCHROME2"


def test_diconde_style_radiograph_keeps_component_and_exposure(cam):
    image = pixels(16, seed=1)
    data = dicom_bytes(image, sop_class=DX_FOR_PROCESSING, Modality="DX", PatientName="Housing^AC-7",
                       PatientID="SN-004711", KVP="160", XRayTubeCurrent=3, Manufacturer="Detector Co",
                       StationName="XR-CELL-2")
    frame = land(cam, "dr_0001.dcm", data)
    assert np.array_equal(frame.image, image)
    facts = frame.meta["dicom"]
    assert facts["component_name"] == "Housing^AC-7" and facts["component_id"] == "SN-004711"
    assert facts["modality"] == "DX" and facts["sop_class_uid"] == DX_FOR_PROCESSING
    assert float(facts["kvp"]) == 160.0 and facts["manufacturer"] == "Detector Co"


def test_dicom_12_bits_stored_is_mono12(cam):
    image = pixels(12, seed=2)
    frame = land(cam, "twelve.dcm", dicom_bytes(image, bits=12))
    assert frame.pixel_format == "Mono12" and frame.bit_depth == 12 and np.array_equal(frame.image, image)


def test_dicom_monochrome1_is_turned_into_monochrome2(cam):
    image = pixels(16, seed=3)
    frame = land(cam, "inverted.dcm", dicom_bytes(image, photometric="MONOCHROME1"))
    assert np.array_equal(frame.image, 65535 - image)  # bright = more signal, like every other image


@pytest.mark.parametrize("case", ["truncated", "colour", "no_pixels"])
def test_unusable_dicom_is_quarantined_with_its_reason(cam, case):
    image = pixels(16, seed=4)
    if case == "truncated":
        data = dicom_bytes(image)[:-500]
    elif case == "colour":
        data = dicom_bytes(np.repeat(image[:, :, None], 3, axis=2), photometric="RGB", samples=3)
    else:
        ds = pydicom.dcmread(io.BytesIO(dicom_bytes(image)))
        del ds.PixelData
        buf = io.BytesIO()
        ds.save_as(buf)
        data = buf.getvalue()
    with pytest.raises(BadImage, match=f"{case}.dcm"):
        land(cam, f"{case}.dcm", data)
    (reason,) = cam.watcher.quarantined()
    expected = {"truncated": "pixel data", "colour": "photometric", "no_pixels": "without pixel data"}[case]
    assert expected in reason["reason"] and (cam.folder / "quarantine" / f"{case}.dcm").read_bytes() == data


@pytest.mark.parametrize("compression", [None, "zlib", "lzw"])
def test_tiff_16_bit_is_pixel_exact(cam, compression):
    image = pixels(16, seed=5)
    if compression == "lzw":  # OpenCV's libtiff writes LZW (tifffile would need imagecodecs)
        data = cv2.imencode(".tif", image)[1].tobytes()
    else:
        buf = io.BytesIO()
        tifffile.imwrite(buf, image, photometric="minisblack", compression=compression)
        data = buf.getvalue()
    frame = land(cam, f"r_{compression}.tif", data)
    assert frame.pixel_format == "Mono16" and np.array_equal(frame.image, image)
    assert frame.meta["original"]["sha256"] and frame.meta["tiff"]["bits_per_sample"] == 16


def test_float_tiff_is_quarantined(cam):
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.ones((16, 16), np.float32))
    with pytest.raises(BadImage, match="float32"):
        land(cam, "float.tif", buf.getvalue())


def test_tiff_with_a_12_bit_expectation_checks_the_values(tmp_path):
    inbox = tmp_path / "in"
    inbox.mkdir()
    cam = XrayFolderCamera(inbox, expected_pixel_format="Mono12", poll_interval_s=0.005, settle_s=0.0)
    cam.open()
    cam.arm(TriggerMode.WATCHED_FOLDER)
    ok = pixels(12, seed=6)
    buf = io.BytesIO()
    tifffile.imwrite(buf, ok)
    assert land(cam, "a.tif", buf.getvalue()).pixel_format == "Mono12"
    buf = io.BytesIO()
    tifffile.imwrite(buf, pixels(16, seed=7))
    with pytest.raises(BadImage, match="do not fit the 12 bits"):
        land(cam, "b.tif", buf.getvalue())
