"""16-bit images (a Mono16 station): stored PNGs and TIFF copies named by inspection id,
compared with the line by name."""
from __future__ import annotations

import copy

import cv2
import numpy as np
import yaml
from conftest import STATION, result_rows

from station.cli import main
from station.config import parse_config
from station.runtime import StationRuntime
from station.store.station_store import StationStore


def test_mono16_tiffs_named_by_inspection_id_reproduce_the_line(tmp_path):
    cfg = copy.deepcopy(STATION)
    cfg["camera"].update(pixel_format="Mono16", seed=9)
    data = tmp_path / "data"
    rt = StationRuntime.open(parse_config(yaml.safe_dump(cfg), "mono16.yaml"), data)
    try:
        list(rt.run(count=8))
    finally:
        rt.close()
    store = StationStore(data, recover=False)
    try:
        docs = store.recent(100)
        folder = tmp_path / "tiff"
        folder.mkdir()
        for d in docs:
            img = cv2.imread(str(store.image_path(d["id"])), cv2.IMREAD_UNCHANGED)
            assert img.dtype == np.uint16
            assert cv2.imwrite(str(folder / f"{d['id']}.tif"), img)
    finally:
        store.close()
    out = tmp_path / "out"
    assert main(["--data-dir", str(data), "batch", str(folder), "--model", "active", "--out", str(out),
                 "--recipe", "rb", "--compare", "--run-id", "m16", "--no-report"]) == 0
    rows = result_rows(out)
    line = {d["id"]: d["decision"] for d in docs}
    assert {"pass", "reject"} <= set(line.values()), line  # the line judged parts, not captures
    assert len(rows) == len(docs)
    assert {r["inspection_id"]: r["line_decision"] for r in rows} == line  # matched by file name
    assert all(r["error"] is None and r["spec_checked"] for r in rows)
    assert all(r["image_info"]["dtype"] == "uint16" for r in rows)
    assert [r["decision"] for r in sorted(rows, key=lambda r: r["inspection_id"])] == [line[k] for k in sorted(line)]
