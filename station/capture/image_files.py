"""Decoding stored image files (PNG, TIFF, BMP, JPEG) into frames, with the reason when a file
cannot be used: empty, truncated (PNG without IEND, JPEG without EOI, BMP shorter than its
header says - decoders accept some of those silently), corrupt, not an image, wrong layout,
size or bit depth.

Shared by the replay camera (:mod:`station.capture.replay_camera`) and batch re-inspection
(:mod:`station.batch`), so a file is good or bad for the same reason in both. Qt-free.
"""
from __future__ import annotations

import cv2
import numpy as np

from station.capture.base import PIXEL_FORMAT_BITS, BadImage


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8"):
        return "JPEG"
    if data.startswith(b"BM"):
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    return None


def _truncation(kind: str | None, data: bytes) -> str | None:
    """Why ``data`` looks cut short, or None. Decoders may accept some truncated files."""
    if kind == "PNG" and data.rfind(b"IEND", max(0, len(data) - 32)) < 0:
        return "truncated PNG (no IEND chunk at the end)"
    if kind == "JPEG" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return "truncated JPEG (no end-of-image marker)"
    if kind == "BMP" and len(data) >= 6:
        declared = int.from_bytes(data[2:6], "little")
        if len(data) < declared:
            return f"truncated BMP ({len(data)} of {declared} bytes)"
    return None


def decode_image(data: bytes, name: str, *, expected_width: int | None = None,
                 expected_height: int | None = None,
                 expected_pixel_format: str | None = None) -> tuple[np.ndarray, str]:
    """Decode file bytes into (image, pixel format) or raise :class:`BadImage`.

    16-bit stays 16-bit (Mono16, or Mono12 / Mono10 when expected and the values fit);
    colour becomes BGR8 (alpha dropped); 8-bit grey is Mono8.
    """
    def bad(reason: str) -> BadImage:
        err = BadImage(f"{name}: {reason}")
        err.reason = reason
        return err

    if not data:
        raise bad("empty file (0 bytes)")
    kind = _sniff(data)
    why = _truncation(kind, data)
    if why:
        raise bad(why)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        if kind is None:
            raise bad(f"not an image (unrecognised content starting {data[:8]!r})")
        raise bad(f"corrupt or truncated {kind} data (the decoder rejected it)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise bad(f"unsupported image layout {image.shape}")
    if image.dtype not in (np.uint8, np.uint16):
        raise bad(f"unsupported sample type {image.dtype} (need 8- or 16-bit integers)")
    colour = image.ndim == 3
    if colour and image.dtype == np.uint16:
        raise bad("16-bit colour is not supported (BGR8 only)")
    fmt = "BGR8" if colour else ("Mono8" if image.dtype == np.uint8 else "Mono16")
    bits = 8 if image.dtype == np.uint8 else 16

    if expected_pixel_format is not None and expected_pixel_format != fmt:
        want_bits = PIXEL_FORMAT_BITS[expected_pixel_format]
        if expected_pixel_format == "BGR8":
            raise bad(f"grey {bits}-bit image, expected colour BGR8")
        if colour:
            raise bad(f"colour image, expected grey {expected_pixel_format}")
        if want_bits <= 8 or bits == 8:
            raise bad(f"{bits}-bit image, expected {expected_pixel_format} ({want_bits}-bit)")
        top = int(image.max())
        if top >= 1 << want_bits:
            raise bad(f"values up to {top} do not fit the {want_bits} bits of {expected_pixel_format}")
        fmt = expected_pixel_format
    image = np.ascontiguousarray(image)  # a channel slice is a view; frames are contiguous
    h, w = image.shape[:2]
    if (expected_width is not None and w != expected_width) or (
            expected_height is not None and h != expected_height):
        raise bad(f"size {w}x{h}, expected {expected_width or w}x{expected_height or h}")
    return image, fmt
