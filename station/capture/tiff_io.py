"""16-bit TIFF in and out: the only module that imports tifffile.

X-ray detector software writes one radiograph per file, usually an uncompressed or
LZW/deflate 16-bit grey TIFF. OpenCV reads many of those too, but not every layout a
detector writes (tiles, predictors, BigTIFF, odd sample formats), and it says nothing about
*why* a file fails; tifffile does both. tifffile decodes LZW, JPEG and other codecs only
with the optional ``imagecodecs`` package, which the station does not install: those
pages are decoded by OpenCV's libtiff instead (lossless codecs stay pixel exact).
"""
from __future__ import annotations

import io

import cv2
import numpy as np
import tifffile


class TiffReadError(ValueError):
    """The bytes are not a usable TIFF; the message is the reason kept with the quarantined file."""


def is_tiff(data: bytes) -> bool:
    return data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def read_tiff(data: bytes) -> tuple[np.ndarray, dict]:
    """Decode the first image of a TIFF; return (pixels, facts worth keeping with the record)."""
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            pages = len(tif.pages)
            if pages == 0:
                raise TiffReadError("TIFF without an image (no pages)")
            page = tif.pages[0]
            image = _pixels(page, data)
            meta = {
                "pages": pages,
                "bits_per_sample": int(page.bitspersample),
                "compression": str(getattr(page.compression, "name", page.compression)),
                "software": str(page.software or ""),
                "description": str(page.description or "")[:1000],
            }
    except TiffReadError:
        raise
    except Exception as exc:  # tifffile raises many kinds on damaged data; all mean "unreadable"
        raise TiffReadError(f"corrupt or truncated TIFF ({type(exc).__name__}: {exc})") from None
    return image, meta


def _pixels(page, data: bytes) -> np.ndarray:
    try:
        return page.asarray()
    except (KeyError, ValueError) as exc:
        if "imagecodecs" not in str(exc):
            raise
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)  # LZW etc.: libtiff
    if image is None or image.shape[:2] != tuple(page.shape[:2]):
        raise TiffReadError(f"compressed TIFF ({page.compression.name}) that cannot be decoded")
    return image


def write_tiff(image: np.ndarray, *, description: str = "", compress: bool = False) -> bytes:
    """Encode a grey uint8/uint16 image as a TIFF (what the simulated detector writes)."""
    buf = io.BytesIO()
    tifffile.imwrite(buf, image, photometric="minisblack", description=description or None,
                     compression="zlib" if compress else None, metadata=None)
    return buf.getvalue()
