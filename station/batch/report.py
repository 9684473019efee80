"""The shift / lot report: one self-contained HTML file next to a batch run's results.

No CDN, no JavaScript: charts are inline SVG (:mod:`station.batch.report_svg`), images are
base64 PNGs, the CSS is inline and prints on A4. The numbers come from the result rows
only (:mod:`station.batch.report_data`), so the same report is written by a local run,
by ``linestation batch-report`` over a results folder or S3 prefix, and by the AWS Batch
merge job.

Heatmaps are not stored in result rows (a 1280x1024 float map per image would multiply
the results' size by ~10^4 for the few images anyone looks at), so the worst items'
heatmaps are recomputed by running the model on those N images when the caller passes
``heatmap_for`` (:func:`detector_heatmaps`); without a model the images are shown alone.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import uuid
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

import cv2
import numpy as np

from station.batch import report_svg as svg
from station.batch.report_data import ReportData, compute
from station.batch.rows import DECISIONS
from station.durable import fsync_dir, write_synced

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
IMAGE_MAX_SIDE = 360
HEAT_FLOOR = 0.3  # below this heat (0.5 = the model's threshold) nothing is tinted, as on the station
ImageLoader = Callable[[str], "np.ndarray | None"]
HeatmapFn = Callable[[dict, np.ndarray], "np.ndarray | None"]

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;color:#111;background:#fff;max-width:1100px;
margin:0 auto;padding:16px 24px;line-height:1.4}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.25em;border-bottom:2px solid #0072B2;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #999;padding:3px 8px;text-align:right}
th{background:#eef3f8}td.l,th.l{text-align:left}caption{text-align:left;font-weight:bold;padding:4px 0}
.kpi{display:flex;flex-wrap:wrap;gap:12px}.kpi div{border:1px solid #999;border-radius:6px;padding:8px 14px}
.kpi b{display:block;font-size:1.5em}.note{color:#444;font-style:italic}
.item{display:flex;gap:12px;flex-wrap:wrap;border:1px solid #ccc;padding:8px;margin:8px 0;break-inside:avoid}
.item img{max-width:360px;height:auto;border:1px solid #999}figure{margin:0}figcaption{font-size:.85em}
.changed{font-weight:bold;background:#FBE3D6}
@media print{body{max-width:none;padding:0}h2{break-after:avoid}svg,table,.item{break-inside:avoid}
@page{size:A4;margin:12mm}}
"""


def _x(text: object) -> str:
    return escape("" if text is None else str(text), quote=True)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}%"


# --- images ---------------------------------------------------------------------------

def local_image_loader(uri: str) -> np.ndarray | None:
    """Read a local image as stored (8 or 16 bit); None when it cannot be read."""
    if uri.startswith("s3://"):
        return None
    img = cv2.imread(uri, cv2.IMREAD_UNCHANGED)
    return img if img is not None and img.size else None


def detector_heatmaps(detector: Any) -> HeatmapFn:
    """A ``heatmap_for`` that runs ``detector`` (a station Detector) on the image again."""
    def heatmap_for(row: dict, image: np.ndarray) -> np.ndarray | None:
        return detector.detect(image).heatmap
    return heatmap_for


def _to_u8_bgr(image: np.ndarray) -> np.ndarray:
    img = image
    if img.dtype != np.uint8:
        top = float(img.max()) if img.size else 0.0
        img = cv2.convertScaleAbs(img, alpha=255.0 / top if top > 0 else 1.0)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    side = max(img.shape[:2])
    if side > IMAGE_MAX_SIDE:
        s = IMAGE_MAX_SIDE / side
        img = cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))),
                         interpolation=cv2.INTER_AREA)
    return img


def heat_overlay(image_bgr: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """The image with the 0..1 heatmap blended on (inferno, transparent where normal) and
    a white ring round what the model calls anomalous (heat >= 0.5): visible in grey print."""
    h = cv2.resize(np.asarray(heatmap, np.float32), (image_bgr.shape[1], image_bgr.shape[0]),
                   interpolation=cv2.INTER_LINEAR)
    color = cv2.applyColorMap(np.clip(h * 255.0, 0, 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    alpha = (np.clip((h - HEAT_FLOOR) / (1.0 - HEAT_FLOOR), 0, 1) * 0.8)[..., None]
    out = (image_bgr.astype(np.float32) * (1 - alpha) + color.astype(np.float32) * alpha).astype(np.uint8)
    hot = (h >= 0.5).astype(np.uint8)
    if hot.any():
        contours, _ = cv2.findContours(cv2.dilate(hot, np.ones((5, 5), np.uint8)), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), 2)
    return out


def png_data_uri(image_bgr: np.ndarray) -> str:
    ok, png = cv2.imencode(".png", image_bgr)
    if not ok:
        raise ValueError("PNG encoding failed")
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode("ascii")


# --- sections -------------------------------------------------------------------------

def _table(caption: str, head: list[str], rows: list[list[object]], *, left: int = 1) -> str:
    th = "".join(f'<th scope="col"{" class=l" if i < left else ""}>{_x(h)}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td{" class=l" if i < left else ""}>{_x(c)}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><caption>{_x(caption)}</caption><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _summary(d: ReportData) -> str:
    cells = [("images", d.total), ("yield", _pct(d.yield_pct))]
    cells += [(name, d.counts.get(name, 0)) for name in DECISIONS]
    cells.append(("errors", d.error_count))
    kpi = "".join(f"<div>{_x(k)}<b>{_x(v)}</b></div>" for k, v in cells)
    note = ("Yield = pass / (pass + reject), as on the station's charts; reviews and capture "
            "faults are not decided yet and are counted beside it.")
    if d.total == 0:
        note = "This run produced no result rows: no image was inspected."
    elif d.yield_pct is None:
        note = "No image was decided pass or reject, so there is no yield."
    return f'<section><h2>Summary</h2><div class="kpi">{kpi}</div><p class="note">{_x(note)}</p></section>'


def _yield_section(d: ReportData) -> str:
    if d.total == 0:
        return ""
    src = "capture time" if d.hour_source == "captured_at" else "batch inspection time"
    hours = [(f"{g.key[5:10]} {g.key[11:13]}h" if len(g.key) == 13 else g.key, g.counts, g.yield_pct)
             for g in d.by_hour]
    lots = [(g.key, g.counts, g.yield_pct) for g in d.by_lot]
    head = ["group", "images", *DECISIONS, "yield"]
    lot_rows = [[g.key, g.total, *(g.counts.get(n, 0) for n in DECISIONS), _pct(g.yield_pct)] for g in d.by_lot]
    hour_rows = [[label, sum(c.values()), *(c.get(n, 0) for n in DECISIONS), _pct(y)] for label, c, y in hours]
    return ("<section><h2>Yield</h2>"
            + svg.stacked_bars(hours, title=f"Yield per hour (UTC, by {src})", order=DECISIONS)
            + _table(f"Per hour (UTC, by {src})", head, hour_rows)
            + svg.stacked_bars(lots, title="Yield per lot", order=DECISIONS)
            + _table("Per lot", head, lot_rows) + "</section>")


def _pareto_section(d: ReportData) -> str:
    parts = ["<section><h2>Defect Pareto</h2>"]
    for title, bars, colors in (("By decision (everything not passed)", d.pareto_decision, svg.DECISION_COLORS),
                                ("By defect kind (reject and review)", d.pareto_kind, None),
                                ("By failed capture-spec check", d.pareto_spec, None),
                                ("Errors by kind", d.pareto_error, None)):
        if not bars:
            parts.append(f"<h3>{_x(title)}</h3><p class=note>none</p>")
            continue
        triples = [(b.category, b.count, b.cumulative_pct) for b in bars]
        parts.append(f"<h3>{_x(title)}</h3>" + svg.pareto_chart(triples, title=title, colors=colors)
                     + _table(title, ["category", "count", "cumulative"],
                              [[c, n, f"{p:.1f}%"] for c, n, p in triples]))
    return "".join(parts) + "</section>"


def _score_section(d: ReportData, scale: str) -> str:
    if not d.scores:
        return "<section><h2>Score distribution</h2><p class=note>No image was scored by the model.</p></section>"
    log_scale = scale == "log" or (scale == "auto" and svg.wants_log_scale(d.scores))
    note = ""
    if log_scale and scale == "auto":
        note = "<p class=note>Log scale: a few outlying scores would squeeze the rest into one or two bins.</p>"
    if len(d.thresholds) > 1:
        note += (f"<p class=note>Rows carry {len(d.thresholds)} different thresholds (several models); the "
                 f"line marks the most common one.</p>")
    above = sum(1 for s in d.scores if d.threshold is not None and s > d.threshold)
    return ("<section><h2>Score distribution</h2>"
            + svg.histogram(d.scores, threshold=d.threshold, title="Anomaly scores", log=log_scale)
            + note + f"<p>{len(d.scores)} scored images, {above} above the threshold.</p></section>")


def _worst_section(d: ReportData, load_image: ImageLoader | None, heatmap_for: HeatmapFn | None) -> str:
    if not d.worst:
        return ""
    items = []
    for row in d.worst:
        name = row.get("part_id") or row.get("image_id") or row.get("image")
        figs, notes = [], []
        image = None
        if load_image is not None and row.get("image"):
            try:
                image = load_image(str(row["image"]))
            except Exception as e:  # a missing image must not cost the report
                notes.append(f"image not readable: {e}")
        if image is None:
            notes.append("image not available")
        else:
            base = _to_u8_bgr(image)
            figs.append(f'<figure><img src="{png_data_uri(base)}" alt="image of {_x(name)}">'
                        "<figcaption>image</figcaption></figure>")
            heat = None
            if heatmap_for is not None:
                try:
                    heat = heatmap_for(row, image)
                except Exception as e:
                    notes.append(f"heatmap not recomputed: {e}")
            if heat is not None:
                figs.append(f'<figure><img src="{png_data_uri(heat_overlay(base, heat))}" '
                            f'alt="heatmap of {_x(name)}, ringed where the model sees an anomaly">'
                            "<figcaption>heatmap (recomputed), ring = above threshold</figcaption></figure>")
            elif heatmap_for is None:
                notes.append("no model given: heatmap not recomputed")
        facts = [("decision", row.get("decision")), ("score", row.get("score")), ("threshold", row.get("threshold")),
                 ("confidence", row.get("confidence")), ("lot", row.get("lot")),
                 ("line decision", row.get("line_decision")), ("image", row.get("image"))]
        dl = "".join(f"<dt>{_x(k)}</dt><dd>{_x(v)}</dd>" for k, v in facts if v is not None)
        items.append(f'<div class="item"><div><h3>{_x(name)}</h3><dl>{dl}</dl>'
                     + "".join(f"<p class=note>{_x(n)}</p>" for n in notes) + "</div>" + "".join(figs) + "</div>")
    return f"<section><h2>Worst {len(d.worst)} items (highest score / threshold)</h2>{''.join(items)}</section>"


def _comparison_section(d: ReportData) -> str:
    if not d.comparison:
        return ""
    cols = [c for c in DECISIONS] + sorted({k for r in d.comparison.values() for k in r} - set(DECISIONS))
    lines = [c for c in DECISIONS if c in d.comparison] + sorted(set(d.comparison) - set(DECISIONS))
    head = "".join(f'<th scope="col">{_x(c)}</th>' for c in cols)
    body = []
    for line in lines:
        cells = "".join(f'<td{" class=changed" if c != line and d.comparison[line].get(c) else ""}>'
                        f"{d.comparison[line].get(c, 0)}</td>" for c in cols)
        body.append(f'<tr><th scope="row" class=l>{_x(line)}</th>{cells}</tr>')
    return ("<section><h2>Against the line's decisions</h2>"
            f"<p>{d.compared} images had a decision recorded at the line; the model changed "
            f"<b>{d.changed}</b> of them (highlighted cells).</p>"
            f'<table><caption>Rows: decision at the line. Columns: decision of this run.</caption>'
            f'<thead><tr><th scope="col" class=l>line \\ batch</th>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></section>")


def _errors_section(d: ReportData) -> str:
    if not d.error_count:
        return ""
    rows = [[r.get("image") or r.get("image_id"), r.get("error")] for r in d.errors]
    more = (f"<p class=note>... and {d.error_count - len(rows)} more (see the result rows).</p>"
            if d.error_count > len(rows) else "")
    return ("<section><h2>Images that could not be inspected</h2>"
            + _table(f"{d.error_count} errors", ["image", "error"], rows, left=2) + more + "</section>")


def _meta_section(d: ReportData, metadata: dict[str, Any] | None) -> str:
    facts: list[tuple[str, object]] = [
        ("runs", ", ".join(f"{r} ({n} rows)" for r, n in d.runs) or "none"),
        ("shards", ", ".join(map(str, d.shards)) or "none"),
        ("stations", ", ".join(d.stations) or "none"), ("recipes", ", ".join(d.recipes) or "none"),
        ("first inspected", d.first_inspected), ("last inspected", d.last_inspected),
        ("thresholds", ", ".join(f"{t:g}" for t in d.thresholds) or "none"),
    ]
    for k, v in (metadata or {}).items():
        facts.append((k, v if isinstance(v, (str, int, float)) or v is None else json.dumps(v, sort_keys=True)))
    dl = "".join(f"<dt>{_x(k)}</dt><dd>{_x(v)}</dd>" for k, v in facts)
    models = _table("Models", ["model id", "version", "content hash", "rows"],
                    [list(m) for m in d.models], left=3) if d.models else "<p class=note>No model result in the rows.</p>"
    return f"<section><h2>Model and run</h2>{models}<dl>{dl}</dl></section>"


def render_html(rows: Iterable[dict[str, Any]], *, title: str, metadata: dict[str, Any] | None = None,
                worst_n: int = 8, load_image: ImageLoader | None = local_image_loader,
                heatmap_for: HeatmapFn | None = None,
                score_scale: Literal["auto", "linear", "log"] = "auto") -> str:
    """The report as one HTML string (see :func:`write_report`)."""
    if score_scale not in ("auto", "linear", "log"):
        raise ValueError(f"score_scale must be auto, linear or log, not {score_scale!r}")
    d = compute(rows, worst_n=worst_n)
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width\"><title>{_x(title)}</title>"
            f"<style>{CSS}</style></head><body><header><h1>{_x(title)}</h1>"
            f"<p class=note>LineStation batch report, generated {generated} UTC.</p></header><main>"
            + _summary(d) + _yield_section(d) + _pareto_section(d) + _score_section(d, score_scale)
            + _comparison_section(d) + _worst_section(d, load_image, heatmap_for) + _errors_section(d)
            + _meta_section(d, metadata) + "</main></body></html>\n")


def write_report(rows: Iterable[dict[str, Any]], out_dir: Path, *, title: str,
                 metadata: dict[str, Any] | None = None, worst_n: int = 8,
                 load_image: ImageLoader | None = local_image_loader, heatmap_for: HeatmapFn | None = None,
                 score_scale: Literal["auto", "linear", "log"] = "auto") -> Path:
    """Write ``out_dir/report.html`` from the result rows and return its path.

    ``rows`` is read once (a generator over JSON-lines files is fine). ``load_image``
    reads a row's ``image`` URI for the worst items (local files by default; pass an S3
    reader for ``s3://`` images); ``heatmap_for`` recomputes their heatmaps (see
    :func:`detector_heatmaps`). The file is written whole or not at all (temp + rename).
    """
    html = render_html(rows, title=title, metadata=metadata, worst_n=worst_n, load_image=load_image,
                       heatmap_for=heatmap_for, score_scale=score_scale)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / REPORT_FILE
    tmp = out_dir / f".{REPORT_FILE}.{uuid.uuid4().hex[:8]}.tmp"
    write_synced(tmp, html.encode("utf-8"))
    os.replace(tmp, path)
    fsync_dir(out_dir)
    return path
