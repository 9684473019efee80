"""The shift / lot report: real rows from the batch inspector over simulated parts, parsed back.

Rows come from :class:`station.batch.engine.BatchInspector` (the line's inspection cycle)
run with a real variation model over real PNG files; the expected numbers are computed
from those rows here, never typed in.
"""
from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from station.batch.engine import BatchInspector
from station.batch.inputs import ImageItem
from station.batch.report import REPORT_FILE, detector_heatmaps, write_report
from station.capture.base import BadImage
from station.capture.image_files import decode_image
from station.capture.sim_camera import SimCamera
from station.detect.variation import VariationModel
from station.inspect.decide import DecisionPolicy


class ReportParser(HTMLParser):
    """Collects what a reader sees: KPI tiles, table cells, images, scripts, links."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.kpi: dict[str, str] = {}
        self._kpi_label: str | None = None
        self._in_kpi = 0
        self.images: list[dict[str, str]] = []
        self.tags = Counter()
        self.text: list[str] = []
        self.tables: list[list[list[str]]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags[tag] += 1
        if tag == "div" and a.get("class") == "kpi":
            self._in_kpi = 1
        elif tag == "div" and self._in_kpi:
            self._in_kpi += 1
            self._kpi_label = ""
        if tag == "img":
            self.images.append(a)
        if tag == "table":
            self.tables.append([])
        if tag == "tr":
            self._row = []
        if tag in ("td", "th"):
            self._cell = []
        self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag == "div" and self._in_kpi:
            self._in_kpi -= 1
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr" and self._row is not None and self.tables:
            self.tables[-1].append(self._row)
            self._row = None
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._in_kpi > 1:
            if self.stack and self.stack[-1] == "b":
                self.kpi[self._kpi_label.strip()] = data.strip()
            else:
                self._kpi_label += data


def parse(html: str) -> ReportParser:
    p = ReportParser()
    p.feed(html)
    p.close()
    return p


def svgs(html: str) -> list[ET.Element]:
    blocks = re.findall(r"<svg\b.*?</svg>", html, re.S)
    return [ET.fromstring(b) for b in blocks]  # raises on malformed XML


def decoded_images(p: ReportParser) -> list[np.ndarray]:
    out = []
    for img in p.images:
        src = img["src"]
        assert src.startswith("data:image/png;base64,"), src[:40]
        out.append(cv2.imdecode(np.frombuffer(base64.b64decode(src.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR))
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """16 simulated parts (every 4th with a defect, two lots, line decisions on half) and
    one corrupt file, through the batch inspector; returns (rows, model, folder)."""
    folder = tmp_path_factory.mktemp("parts")
    cam = SimCamera(width=320, height=256, seed=5)
    model = VariationModel.train(cam.good_images(12))
    inspector = BatchInspector(model, DecisionPolicy(), {}, run_id="shift-1", shard=0)
    rows = []
    for i in range(16):
        image, _ = cam.render(100 + i, defect="scratch" if i % 4 == 0 else None, fault=None)
        path = folder / f"part{i:02d}.png"
        cv2.imwrite(str(path), image)
        item = ImageItem(uri=str(path), image_id=f"img{i}", part_id=f"P{i:02d}", lot="LOT-A" if i < 8 else "LOT-B",
                         recipe="demo", station="st1", line_decision="pass" if i % 2 == 0 else None)
        rows.append(inspector.inspect(item, decode_image(path.read_bytes(), path.name)[0], None))
    bad = folder / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    item = ImageItem(uri=str(bad), image_id="bad", part_id="P99", lot="LOT-B", recipe="demo", station="st1")
    try:
        loaded, _ = decode_image(bad.read_bytes(), bad.name)
    except BadImage as exc:
        loaded = exc
    rows.append(inspector.inspect(item, loaded, None))
    return rows, model, folder


def test_report_shows_the_numbers_of_the_rows(run, tmp_path):
    rows, model, _ = run
    path = write_report(iter(rows), tmp_path / "out", title="Shift 1 audit", worst_n=4,
                        heatmap_for=detector_heatmaps(model))
    assert path == tmp_path / "out" / REPORT_FILE
    html = path.read_text(encoding="utf-8")
    p = parse(html)
    counts = Counter(r["decision"] for r in rows)
    assert counts["reject"] > 0 and counts["pass"] > 0  # the fixture exercises both
    expected_yield = 100.0 * counts["pass"] / (counts["pass"] + counts["reject"])
    assert p.kpi["images"] == str(len(rows))
    assert p.kpi["yield"] == f"{expected_yield:.1f}%"
    for decision in ("pass", "reject", "review", "check_capture"):
        assert p.kpi[decision] == str(counts[decision])
    assert p.kpi["errors"] == str(sum(1 for r in rows if r["error"]))
    # per lot: a table row per lot with its own count and yield
    lot_table = next(t for t in p.tables if t and t[0][0] == "group" and any(r[0] == "LOT-A" for r in t[1:]))
    for lot in ("LOT-A", "LOT-B"):
        mine = Counter(r["decision"] for r in rows if r["lot"] == lot)
        row = next(r for r in lot_table if r[0] == lot)
        assert row[1] == str(sum(mine.values()))
        decided = mine["pass"] + mine["reject"]
        assert row[-1] == (f"{100.0 * mine['pass'] / decided:.1f}%" if decided else "n/a")
    # the defect Pareto by decision counts everything not passed
    pareto = next(t for t in p.tables if t and t[0] == ["category", "count", "cumulative"])
    assert {r[0]: int(r[1]) for r in pareto[1:]} == {k: v for k, v in counts.items() if k != "pass"}
    # well-formed SVG charts with a title each, no script, nothing fetched from elsewhere
    charts = svgs(html)
    assert len(charts) >= 5
    assert all(c.find("{http://www.w3.org/2000/svg}title").text for c in charts)
    assert p.tags["script"] == 0 and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html
    # the worst 4 by score / threshold, each with its image and a heatmap overlay
    worst = sorted((r for r in rows if r["score"] is not None), key=lambda r: r["score"] / r["threshold"],
                   reverse=True)[:4]
    text = " ".join(p.text)
    for r in worst:
        assert r["part_id"] in text
    images = decoded_images(p)
    assert len(images) == 8 and all(im is not None and im.shape[0] > 0 for im in images)
    assert all(img.get("alt") for img in p.images)
    # the comparison with the line: changed count computed from the rows
    compared = [r for r in rows if r["line_decision"]]
    changed = sum(1 for r in compared if r["decision"] != r["line_decision"])
    assert f"{len(compared)} images had a decision recorded at the line" in text
    assert f"changed {changed} of them" in " ".join(text.split())
    # the corrupt file is listed with its reason; the model is named
    assert "corrupt.png" in text and "truncated PNG" in text
    assert model.model_id in text


def test_empty_run_gives_a_clear_report(tmp_path):
    path = write_report([], tmp_path, title="Nothing ran")
    html = path.read_text(encoding="utf-8")
    p = parse(html)
    assert p.kpi["images"] == "0" and p.kpi["yield"] == "n/a"
    assert "no result rows" in " ".join(p.text)
    svgs(html)


def test_run_with_only_errors_gives_a_clear_report(run, tmp_path):
    rows = [r for r in run[0] if r["error"]]
    assert rows
    html = write_report(rows, tmp_path, title="Only errors").read_text(encoding="utf-8")
    p = parse(html)
    text = " ".join(p.text)
    assert p.kpi["yield"] == "n/a" and p.kpi["errors"] == str(len(rows))
    assert "No image was decided pass or reject" in text
    assert "No image was scored by the model" in text
    assert all(r["image"] in text for r in rows)
    svgs(html)


def test_many_errors_are_counted_all_and_listed_in_part(run, tmp_path):
    from station.batch.report_data import ERROR_ROWS_KEPT

    bad = next(r for r in run[0] if r["error"])
    rows = [dict(bad, image=f"/lots/L9/img{i:04d}.png", image_id=f"e{i}") for i in range(ERROR_ROWS_KEPT + 7)]
    html = write_report(rows, tmp_path, title="errors").read_text(encoding="utf-8")
    p = parse(html)
    assert p.kpi["errors"] == str(len(rows))
    listed = next(t for t in p.tables if t and t[0] == ["image", "error"])
    assert len(listed) - 1 == ERROR_ROWS_KEPT and "... and 7 more" in " ".join(p.text)


def test_outliers_switch_the_score_histogram_to_log_scale(run, tmp_path):
    rows = [dict(r) for r in run[0] if r["score"] is not None]
    for r in rows[:2]:  # two parts far off the scale (e.g. a lens cap left on)
        r["score"] = r["threshold"] * 1000.0
    auto = write_report(rows, tmp_path / "a", title="auto", load_image=None).read_text(encoding="utf-8")
    linear = write_report(rows, tmp_path / "b", title="lin", load_image=None, score_scale="linear").read_text("utf-8")
    assert "anomaly score (log scale)" in auto and "anomaly score (log scale)" not in linear
    plain = write_report(run[0], tmp_path / "c", title="plain", load_image=None).read_text(encoding="utf-8")
    assert "anomaly score (log scale)" not in plain


def test_missing_images_and_bad_options_do_not_cost_the_report(run, tmp_path):
    rows = [dict(r, image=str(tmp_path / "moved-away.png")) for r in run[0]]
    html = write_report(rows, tmp_path, title="images gone", worst_n=2).read_text(encoding="utf-8")
    assert html.count("image not available") == 2 and "<img" not in html
    with pytest.raises(ValueError, match="score_scale"):
        write_report(rows, tmp_path / "x", title="bad", score_scale="cubic")  # type: ignore[arg-type]
    assert not (tmp_path / "x" / REPORT_FILE).exists()


def test_title_and_values_are_escaped(run, tmp_path):
    rows = [dict(r, lot="<script>alert(1)</script>") for r in run[0][:3]]
    html = write_report(rows, tmp_path, title="A & B <lot>", load_image=None).read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert parse(html).tags["script"] == 0
    svgs(html)
