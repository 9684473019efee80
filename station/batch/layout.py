"""Where batch results live: the one module that knows the key / path layout.

The same relative keys are used under a local output directory and under an
``s3://bucket/prefix``, so Athena / QuickSight (Hive-style partitions) and the HTML report
read either the same way::

    results/date=YYYY-MM-DD/station=<s>/recipe=<r>/<run_id>-<shard>.jsonl   one JSON row per image
    summary/run=<run_id>/run.json                                            the run manifest
    summary/run=<run_id>/shard=<i>.json                                      per-shard summary
    summary/run=<run_id>/summary.json                                        merged summary
    summary/run=<run_id>/listing.jsonl                                       AWS runs: the images the submitter listed
    summary/run=<run_id>/profiles/<serial>/<recipe>/v<N>/                    AWS runs: the calibration profiles shipped
    reports/run=<run_id>/report.html                                         the shift / lot report

``date`` is the run's date (UTC, fixed in the run manifest, so a resumed or sharded run
writes one partition). Partition values are sanitised: a value can never add a path level.
"""
from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

RESULTS_DIR = "results"
SUMMARY_DIR = "summary"
REPORTS_DIR = "reports"
PARTITION_KEYS = ("date", "station", "recipe")
RUN_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.]*(?:-[A-Za-z0-9_.]+)*"
_RUN_ID = re.compile(rf"^{RUN_ID_PATTERN}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # calibration.profile.NAME_PATTERN
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_RESULTS_KEY = re.compile(  # partition values as partition_value() writes them; any prefix folders
    rf"^(?:[^/]+/)*{RESULTS_DIR}/date=(?P<date>\d{{4}}-\d{{2}}-\d{{2}})/station=(?P<station>[A-Za-z0-9_.-]+)/"
    rf"recipe=(?P<recipe>[A-Za-z0-9_.-]+)/(?P<run_id>{RUN_ID_PATTERN})-(?P<shard>\d+)\.jsonl$")


class LayoutError(ValueError):
    """A run id, date, shard or key that does not fit the layout."""


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id) or len(run_id) > 100:
        raise LayoutError(f"run id {run_id!r} must be letters, digits, '.', '_' and single '-' "
                          f"between them (at most 100 characters)")
    return run_id


def new_run_id() -> str:
    """A fresh run id; in an AWS Batch job without ``--run-id``, the job's id, which every
    child of an array job shares (``AWS_BATCH_JOB_ID`` is ``<id>:<index>`` there)."""
    job = os.environ.get("AWS_BATCH_JOB_ID", "")
    if job:
        return check_run_id(job.split(":", 1)[0])
    return f"batch-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def check_date(date: str) -> str:
    if not isinstance(date, str) or not _DATE.match(date):
        raise LayoutError(f"date {date!r} must be YYYY-MM-DD")
    return date


def partition_value(value: str | None) -> str:
    """A Hive partition value: unsafe characters become '_', empty becomes 'unknown'."""
    cleaned = _UNSAFE.sub("_", str(value or "")).strip("._") if value else ""
    return cleaned or "unknown"


def _shard(shard: int) -> int:
    if not isinstance(shard, int) or isinstance(shard, bool) or shard < 0:
        raise LayoutError(f"shard must be an int >= 0, got {shard!r}")
    return shard


def results_key(run_id: str, shard: int, *, date: str, station: str | None, recipe: str | None) -> str:
    """The JSON-lines file of one shard's rows in one (date, station, recipe) partition."""
    return (f"{RESULTS_DIR}/date={check_date(date)}/station={partition_value(station)}/"
            f"recipe={partition_value(recipe)}/{check_run_id(run_id)}-{_shard(shard)}.jsonl")


def results_prefix(date: str | None = None) -> str:
    """The key prefix to list for a run's results: its date partition when known (runs of
    every day share ``results/``; a run writes one date), else all of ``results/``."""
    return f"{RESULTS_DIR}/date={check_date(date)}/" if date else f"{RESULTS_DIR}/"


def run_dir_key(run_id: str) -> str:
    return f"{SUMMARY_DIR}/run={check_run_id(run_id)}"


def run_manifest_key(run_id: str) -> str:
    return f"{run_dir_key(run_id)}/run.json"


def run_listing_key(run_id: str) -> str:
    """The image listing an AWS run's submitter counted; its children inspect exactly these."""
    return f"{run_dir_key(run_id)}/listing.jsonl"


def run_profile_key(run_id: str, serial: str, recipe: str, version: int) -> str:
    """The folder of a calibration profile shipped with a run (``profile.json``, ``reference.png``)."""
    if not all(isinstance(v, str) and _PROFILE_NAME.match(v) for v in (serial, recipe)):
        raise LayoutError(f"profile {serial!r}/{recipe!r}: not a calibration store name")
    return f"{run_dir_key(run_id)}/profiles/{serial}/{recipe}/v{int(version)}"


def shard_lock_name(shard: int) -> str:
    """The lock file (in the run's summary folder) a process holds while it runs ``shard``."""
    return f".shard={_shard(shard)}.lock"


def shard_summary_key(run_id: str, shard: int) -> str:
    return f"{run_dir_key(run_id)}/shard={_shard(shard)}.json"


def summary_key(run_id: str) -> str:
    return f"{run_dir_key(run_id)}/summary.json"


def report_key(run_id: str) -> str:
    return f"{REPORTS_DIR}/run={check_run_id(run_id)}/report.html"


@dataclass(frozen=True)
class ResultsKey:
    """The parts of a results key (what Athena sees as partition columns + file name)."""

    date: str
    station: str
    recipe: str
    run_id: str
    shard: int

    @property
    def partitions(self) -> dict[str, str]:
        return {"date": self.date, "station": self.station, "recipe": self.recipe}


def parse_results_key(key: str) -> ResultsKey | None:
    """The partition values of a results key (None when ``key`` is not one)."""
    path = key[5:] if key.startswith("s3://") else key  # s3://bucket/...: the bucket is a folder here
    m = _RESULTS_KEY.match(path)
    if not m or any(part in ("", ".", "..") for part in path.split("/")):
        return None  # a key that climbs out of its folder is no results key (it names a path here)
    return ResultsKey(m["date"], m["station"], m["recipe"], m["run_id"], int(m["shard"]))


def is_shard_summary_key(key: str, run_id: str) -> int | None:
    """The shard number when ``key`` is a shard summary of ``run_id``, else None."""
    m = re.match(rf"^(?:.*/)?{re.escape(run_dir_key(run_id))}/shard=(\d+)\.json$", key)
    return int(m.group(1)) if m else None


# --- where the keys go ----------------------------------------------------------------

def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, "some/prefix") (prefix without slashes at the ends)."""
    if not uri.startswith("s3://"):
        raise LayoutError(f"{uri!r} is not an s3:// URI")
    bucket, _, prefix = uri[5:].partition("/")
    if not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", bucket):
        raise LayoutError(f"{uri!r}: {bucket!r} is not a valid S3 bucket name")
    return bucket, prefix.strip("/")


@dataclass(frozen=True)
class OutLocation:
    """An output root: a local directory or an S3 bucket + prefix."""

    local: Path | None = None
    bucket: str | None = None
    prefix: str = ""

    @classmethod
    def parse(cls, spec: str | Path) -> OutLocation:
        text = str(spec)
        if text.startswith("s3://"):
            bucket, prefix = split_s3_uri(text)
            return cls(bucket=bucket, prefix=prefix)
        return cls(local=Path(text).expanduser().resolve())

    @property
    def is_s3(self) -> bool:
        return self.bucket is not None

    def s3_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def relative(self, s3_key: str) -> str:
        """The layout key of a full S3 key under this location's prefix."""
        return s3_key[len(self.prefix) + 1:] if self.prefix else s3_key

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/") if self.is_s3 else str(self.local)
