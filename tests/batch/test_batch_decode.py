"""Batch reads images with the station's decoder: a file cut short (a PNG without its IEND
chunk, a JPEG without its end-of-image marker; some decoders accept such files) is a bad
image saying it is truncated, as on the line; a whole file decodes to its pixels."""
from __future__ import annotations

import cv2
import numpy as np

from station.batch.inputs import ImageItem
from station.batch.workers import load_item
from station.capture.base import BadImage


def _item(path) -> ImageItem:
    return ImageItem(uri=str(path), image_id=path.name, part_id=path.stem, lot="L", recipe="r", station="s")


def test_truncated_files_are_bad_images_with_the_reason(tmp_path):
    image = (np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) % 251).astype(np.uint8)
    png = cv2.imencode(".png", image)[1].tobytes()
    jpg = cv2.imencode(".jpg", image)[1].tobytes()
    cases = {"no-iend.png": (png[:-12], "truncated PNG"), "no-eoi.jpg": (jpg[:-2], "truncated JPEG")}
    for name, (data, reason) in cases.items():
        (tmp_path / name).write_bytes(data)
        loaded, info = load_item(_item(tmp_path / name), None)
        assert isinstance(loaded, BadImage) and reason in str(loaded) and name in str(loaded)
        assert info == {"bytes": len(data)}
    (tmp_path / "whole.png").write_bytes(png)
    loaded, info = load_item(_item(tmp_path / "whole.png"), None)
    assert np.array_equal(loaded, image) and loaded.flags["C_CONTIGUOUS"] and info["width"] == 64
