"""The final step of a sharded run: merge every shard's summary and rows, write the report.

Runs as the AWS Batch job that depends on the array job (``linestation batch-merge``), or
locally over a results folder after N local shards. It reads the run's manifest, every
``shard=<i>.json`` summary and every results file of the run (any partition, any shard),
writes ``summary/run=<id>/summary.json`` (the shard summaries merged, plus which shards are
missing) and ``reports/run=<id>/report.html``, locally or under the S3 prefix.

A missing shard does not stop the merge: the summary says ``complete: false`` and lists
the missing shards, the report shows what exists, and the command exits non-zero so the
job is marked failed. A torn last line in a results file (a shard killed mid-write) is
skipped and counted, never fatal.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from station.batch.layout import (
    RESULTS_DIR,
    SUMMARY_DIR,
    OutLocation,
    check_run_id,
    parse_results_key,
    report_key,
    results_prefix,
    run_manifest_key,
    split_s3_uri,
    summary_key,
)
from station.batch.output import RunOutput
from station.batch.report import HeatmapFn, detector_heatmaps, local_image_loader, write_report
from station.batch.s3io import S3Access
from station.batch.summary import merge
from station.capture.image_files import decode_image

log = logging.getLogger(__name__)


class MergeError(RuntimeError):
    """The run cannot be merged (no manifest, no shard finished); the message says why."""


@dataclass
class MergeResult:
    run_id: str
    summary: dict[str, Any]
    report: str | None

    @property
    def complete(self) -> bool:
        return bool(self.summary.get("complete"))


def image_loader(s3: S3Access | None):
    """Reads local paths and (with ``s3``) ``s3://`` images, for the report's worst items."""
    def load(uri: str) -> np.ndarray | None:
        if uri.startswith("s3://"):
            if s3 is None:
                return None
            bucket, key = split_s3_uri(uri)
            return decode_image(s3.get(bucket, key), uri)[0]
        return local_image_loader(uri)
    return load


def _results_files(output: RunOutput, run_id: str, date: str | None = None) -> Iterator[tuple[str, bytes]]:
    """(key, content) of every results file of ``run_id``, every shard and partition (of
    the run's ``date``, when known: other runs' days are not listed)."""
    if output.s3 is not None:
        out = output.out
        for obj in output.s3.list(out.bucket, out.s3_key(results_prefix(date))):
            key = out.relative(obj["Key"])
            parsed = parse_results_key(key)
            if parsed is not None and parsed.run_id == run_id:
                yield key, output.s3.get(out.bucket, obj["Key"])
        return
    base = output.root / RESULTS_DIR
    for path in sorted(base.glob(f"date=*/station=*/recipe=*/{run_id}-*.jsonl")) if base.is_dir() else []:
        key = path.relative_to(output.root).as_posix()
        parsed = parse_results_key(key)
        if parsed is not None and parsed.run_id == run_id:
            yield key, path.read_bytes()


def read_run_rows(output: RunOutput, run_id: str, stats: dict[str, int],
                  date: str | None = None) -> Iterator[dict[str, Any]]:
    """Every row of the run; ``stats`` counts files, rows and skipped (torn / damaged) lines."""
    for key, data in _results_files(output, run_id, date):
        stats["files"] = stats.get("files", 0) + 1
        lines = data.split(b"\n")
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                torn = n == len(lines)  # no newline after it: a write cut short
                stats["torn_lines" if torn else "damaged_lines"] = stats.get("torn_lines" if torn else "damaged_lines", 0) + 1
                log.warning("%s:%d: %s row skipped", key, n, "torn last" if torn else "damaged")
                continue
            if isinstance(row, dict):
                stats["rows"] = stats.get("rows", 0) + 1
                yield row


def list_runs(output: RunOutput) -> list[str]:
    """The run ids with a manifest under this output (oldest name first)."""
    found = set()
    if output.s3 is not None:
        for obj in output.s3.list(output.out.bucket, output.out.s3_key(SUMMARY_DIR + "/")):
            key = output.out.relative(obj["Key"])
            parts = key.split("/")
            if len(parts) == 3 and parts[1].startswith("run=") and parts[2] == "run.json":
                found.add(parts[1][4:])
    else:
        found = {p.parent.name[4:] for p in (output.root / SUMMARY_DIR).glob("run=*/run.json")}
    return sorted(found)


def merge_run(out: str, run_id: str | None, *, data_dir: Path, s3: S3Access | None = None,
              detector: Any = None, write_summary: bool = True, title: str | None = None,
              worst_n: int = 8) -> MergeResult:
    """Merge run ``run_id`` under ``out`` (folder or ``s3://bucket/prefix``).

    ``run_id`` None picks the only run there (MergeError when there are several).
    ``detector`` (a loaded station model) recomputes the worst items' heatmaps.
    With ``write_summary`` False only the report is (re)written.
    """
    loc = OutLocation.parse(out)
    output = RunOutput(loc, data_dir, s3 or (S3Access() if loc.is_s3 else None))
    if run_id is None:
        runs = list_runs(output)
        if len(runs) != 1:
            raise MergeError(f"{loc}: {'no batch run' if not runs else f'{len(runs)} runs ({chr(44).join(runs)})'}"
                             f" found; pass --run-id")
        run_id = runs[0]
    run_id = check_run_id(run_id)
    output.bind(run_id)
    manifest = output.read_json(run_manifest_key(run_id))
    if manifest is None:
        raise MergeError(f"{loc}: no run {run_id} (no {run_manifest_key(run_id)})")
    shards = output.shard_summaries(run_id)
    if not shards:
        raise MergeError(f"{loc}: no shard of run {run_id} has finished (no shard summaries)")
    merged = merge(shards)
    expected = int(manifest.get("shards") or merged["shards"])
    present = set(merged["shards_present"])
    merged["shards"] = expected
    merged["missing_shards"] = [i for i in range(expected) if i not in present]
    merged["complete"] = merged["complete"] and not merged["missing_shards"]
    settings = manifest.get("settings")  # what every shard inspected with (run.json, not this machine)
    merged["settings"] = settings
    stats: dict[str, int] = {}
    rows = read_run_rows(output, run_id, stats, manifest.get("date"))
    heat: HeatmapFn | None = detector_heatmaps(detector) if detector is not None else None
    meta = {"run_id": run_id, "shards": expected, "missing shards": merged["missing_shards"] or "none",
            "complete": merged["complete"], "model": manifest.get("model"), "inputs": manifest.get("inputs"),
            "output": str(loc)}
    if settings:
        meta["decision policy"] = settings.get("policy")
        meta["spec checks"] = ({r: (d or {}).get("identity") for r, d in settings.get("profiles", {}).items()}
                               if settings.get("spec") else "off")
    path = write_report(rows, (output.root / report_key(run_id)).parent, title=title or f"Batch run {run_id}",
                        metadata=meta, worst_n=worst_n, load_image=image_loader(output.s3), heatmap_for=heat)
    output.upload_file(report_key(run_id), "text/html")
    merged["rows_read"] = stats.get("rows", 0)
    merged["skipped_lines"] = stats.get("torn_lines", 0) + stats.get("damaged_lines", 0)
    merged["report"] = report_key(run_id)
    if write_summary:
        output.write_json(summary_key(run_id), merged)
    return MergeResult(run_id, merged, str(path) if not loc.is_s3 else f"{loc}/{report_key(run_id)}")
