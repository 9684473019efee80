"""Writing a run's files: locally in place, or staged locally and uploaded to S3.

Rows are always appended to local files (the durable ledger, :mod:`station.batch.ledger`);
with ``--out s3://bucket/prefix`` they live in a staging directory
(``<data-dir>/batch/<run_id>/``, same layout) and are uploaded - whole files, idempotent
puts - every ``upload_every_s`` and at the end. A resumed S3 run first fetches the shard's
files from S3, so a container that was replaced carries on where the last upload ended.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from station.batch.layout import (
    RESULTS_DIR,
    SUMMARY_DIR,
    OutLocation,
    is_shard_summary_key,
    parse_results_key,
    results_prefix,
    run_dir_key,
    run_manifest_key,
)
from station.batch.ledger import shard_files
from station.batch.s3io import S3Access, S3AccessError, S3PreconditionFailed
from station.durable import fsync_dir, write_synced


def write_json_local(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    write_synced(tmp, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class RunOutput:
    """The output root of one run (local dir, or S3 with a local staging dir)."""

    def __init__(self, out: OutLocation, data_dir: Path, s3: S3Access | None = None) -> None:
        self.out = out
        self.s3 = s3 if out.is_s3 else None
        self.staging_base = Path(data_dir) / "batch"
        self.root: Path = out.local if out.local is not None else self.staging_base

    def bind(self, run_id: str) -> None:
        """Pick the local root for ``run_id`` (the S3 staging dir is per run)."""
        if self.out.is_s3:
            self.root = self.staging_base / run_id
        self.root.mkdir(parents=True, exist_ok=True)

    # --- run manifest -----------------------------------------------------------------
    def read_json(self, key: str) -> dict[str, Any] | None:
        path = self.root / key
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
        if self.s3 is not None:
            return self.read_json_s3(key)
        return None

    def read_bytes(self, key: str) -> bytes:
        """A file of the run: the local copy, else (S3 outputs) the object; OSError /
        S3AccessError when neither exists."""
        path = self.root / key
        if path.is_file() or self.s3 is None:
            return path.read_bytes()
        return self.s3.get(self.out.bucket, self.out.s3_key(key))

    def write_json(self, key: str, doc: dict[str, Any]) -> None:
        write_json_local(self.root / key, doc)
        if self.s3 is not None:
            self.s3.put_bytes(self.out.bucket, self.out.s3_key(key),
                              (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode(), "application/json")

    def put_profile_file(self, key: str, data: bytes, content_type: str) -> None:
        """S3 only: one file of a profile shipped with the run, put only if the key is new -
        a same-named profile another shard shipped first stays (every reader checks the
        run manifest's sha256, so a different one is refused, never used)."""
        try:
            self.s3.put_bytes(self.out.bucket, self.out.s3_key(key), data, content_type, if_none_match=True)
        except S3PreconditionFailed:
            pass

    def claim_manifest(self, run_id: str, proposed: dict[str, Any]) -> dict[str, Any]:
        """The run's manifest: the existing one (resume, another shard) or ``proposed``."""
        existing = self.read_json(run_manifest_key(run_id))
        if existing is not None:
            return existing
        if self.s3 is not None:
            return self._claim_on_s3(run_id, proposed)
        path = self.root / run_manifest_key(run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".run.{uuid.uuid4().hex[:8]}.tmp")
        write_synced(tmp, (json.dumps(proposed, indent=2, sort_keys=True) + "\n").encode())
        try:
            os.link(tmp, path)  # first shard wins; the others read its manifest
        except FileExistsError:
            return json.loads(path.read_text(encoding="utf-8"))
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)
        return proposed

    def _claim_on_s3(self, run_id: str, proposed: dict[str, Any], attempts: int = 3) -> dict[str, Any]:
        """S3 decides who creates the manifest (a put only if the key is new); the loser
        reads the winner's. The staging copy is written after, from whichever won."""
        key = run_manifest_key(run_id)
        for _ in range(attempts):
            try:
                self.s3.put_bytes(self.out.bucket, self.out.s3_key(key),
                                  (json.dumps(proposed, indent=2, sort_keys=True) + "\n").encode(),
                                  "application/json", if_none_match=True)
                won = proposed
            except S3PreconditionFailed:  # someone else created it: theirs
                won = self.read_json_s3(key)
                if won is None:  # (409: their conditional put was still in flight)
                    continue
            write_json_local(self.root / key, won)
            return won
        raise S3AccessError(f"{self.out}/{key}: could neither create the run manifest nor read the one "
                            f"another process is creating; run the command again")

    def read_json_s3(self, key: str) -> dict[str, Any] | None:
        """The S3 object, None only when it does not exist: any other failure raises, or a run
        whose manifest could not be read would be claimed (and its manifest overwritten) anew."""
        data = self.s3.get_or_none(self.out.bucket, self.out.s3_key(key))
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as exc:
            raise S3AccessError(f"{self.out}/{key} is not JSON ({exc}); not touching the run") from None

    def latest_run_id(self) -> str | None:
        """The most recently started run under this output (for ``--resume`` without ``--run-id``)."""
        pattern = f"*/{SUMMARY_DIR}/run=*/run.json" if self.out.is_s3 else f"{SUMMARY_DIR}/run=*/run.json"
        found = sorted(self.root.glob(pattern) if not self.out.is_s3 else self.staging_base.glob(pattern),
                       key=lambda p: p.stat().st_mtime)
        return found[-1].parent.name.split("=", 1)[1] if found else None

    # --- results ----------------------------------------------------------------------
    def fetch_shard(self, run_id: str, shard: int, date: str | None = None) -> int:
        """S3 only: download this shard's result files that are not staged here; returns how many.
        With the run's ``date`` only that partition is listed (every run shares ``results/``)."""
        if self.s3 is None:
            return 0
        fetched = 0
        for obj in self.s3.list(self.out.bucket, self.out.s3_key(results_prefix(date))):
            key = self.out.relative(obj["Key"])
            parsed = parse_results_key(key)
            if not (parsed and parsed.run_id == run_id and parsed.shard == shard) or (self.root / key).exists():
                continue
            if not key.startswith(f"{RESULTS_DIR}/") or not (self.root / key).resolve().is_relative_to(
                    self.root.resolve()):
                raise S3AccessError(f"{self.out}: results key {obj['Key']!r} points outside the staging folder "
                                    f"{self.root}; not downloading it")
            self.s3.download(self.out.bucket, obj["Key"], self.root / key)
            fetched += 1
        return fetched

    def upload_shard(self, run_id: str, shard: int) -> list[str]:
        """S3 only: put this shard's result files (whole; a repeated put is harmless)."""
        if self.s3 is None:
            return []
        keys = []
        for path in shard_files(self.root, run_id, shard):
            key = path.relative_to(self.root).as_posix()
            self.s3.put_bytes(self.out.bucket, self.out.s3_key(key), path.read_bytes(), "application/x-ndjson")
            keys.append(key)
        return keys

    def shard_summaries(self, run_id: str) -> list[dict[str, Any]]:
        """Every shard summary of ``run_id`` present (local dir, or S3 for S3 outputs)."""
        out = []
        if self.s3 is not None:
            for obj in self.s3.list(self.out.bucket, self.out.s3_key(run_dir_key(run_id) + "/")):
                if is_shard_summary_key(self.out.relative(obj["Key"]), run_id) is not None:
                    out.append(json.loads(self.s3.get(self.out.bucket, obj["Key"])))
            return out
        for path in sorted((self.root / run_dir_key(run_id)).glob("shard=*.json")):
            out.append(json.loads(path.read_text(encoding="utf-8")))
        return out

    def upload_file(self, key: str, content_type: str) -> None:
        if self.s3 is not None:
            self.s3.put_bytes(self.out.bucket, self.out.s3_key(key), (self.root / key).read_bytes(), content_type)
