"""``linestation batch --executor aws-batch``: one array job of N shards plus a merge job.

What the submitter does, in order, so that nothing is submitted that cannot run:

1. checks the inputs are ``s3://`` prefixes (the containers see S3, not this machine's
   folders or record) and lists them: no image, no job;
2. uploads the model to ``s3://BUCKET/models/<model_id>/<version>/`` (skipped when the
   same model is there; :mod:`station.batch.model_uri`);
3. writes the run's manifest under ``--out`` (``summary/run=<run_id>/``): the calibration profiles a local run
   would check against (:mod:`station.batch.profiles`), the image listing it counted, and
   ``run.json`` naming both by sha256 plus the inspection settings (station, recipe, lot,
   decision policy of ``--config``, spec on/off; :mod:`station.batch.settings`). Children
   take all of these from the manifest, so they inspect exactly the listed images exactly
   as a local run would;
4. submits the array job: ``arrayProperties.size = N``, each child running
   ``linestation batch INPUTS --model s3://... --out s3://BUCKET/PREFIX/ --shards N
   --run-id <run_id> --date D --resume`` (a retried child carries on from its last upload)
   and taking its shard from ``AWS_BATCH_JOB_ARRAY_INDEX`` (one shard: a plain job, as
   Batch arrays need 2..10000 children);
5. submits the merge job, ``dependsOn`` the array job *without* a type: SEQUENTIAL and
   N_TO_N chain the children of two array jobs; a plain job that depends on an array job
   waits for all of its children, which is what a merge needs. It runs
   ``linestation batch-merge s3://BUCKET/PREFIX/ --run-id <run_id> --model s3://...``
   (:func:`station.batch.merge.merge_run`): summary.json and report.html under the run.

The date partition is fixed by the submitter (``--date``) so children that start on
either side of midnight write one partition. Every run - AWS or local - shares one layout
under ``--out`` (results partitioned by date / station / recipe, one file per run and
shard), so one Athena table covers them all. The batch API is reached through
:mod:`station.aws_client` only.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import shlex
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from station.aws_client import AwsEndpoint, client, describe_error
from station.batch.inputs import InputError, collect, listing_bytes
from station.batch.layout import (
    LayoutError,
    OutLocation,
    check_run_id,
    new_run_id,
    run_listing_key,
    run_manifest_key,
    split_s3_uri,
)
from station.batch.model_uri import ModelUriError, is_model_uri, parse_model_uri, resolve_model_uri, upload_model
from station.batch.models import ModelChoiceError, ModelRef, resolve_model
from station.batch.profiles import ProfileShipError, ship_profiles
from station.batch.rows import utc_now_iso
from station.batch.s3io import S3Access, S3AccessError
from station.batch.settings import Requested, fresh_settings, with_profiles

MAX_ARRAY_SIZE = 10000  # AWS Batch's limit on array children
DEFAULT_IMAGES_PER_SHARD = 2000


class SubmitError(ValueError):
    """The run cannot be submitted; the message says what to change. Nothing was submitted."""


@dataclass(frozen=True)
class BatchTarget:
    """Where jobs go: the queue and job definition of the CloudFormation stack."""

    job_queue: str
    job_definition: str
    endpoint: AwsEndpoint = field(default_factory=AwsEndpoint)


@dataclass
class SubmitPlan:
    run_id: str
    inputs: list[str]
    images: int
    shards: int
    model_uri: str
    model_uploaded: bool
    out_uri: str
    date: str
    child_command: list[str]
    merge_command: list[str]
    environment: dict[str, str]
    manifest: dict[str, Any] = field(default_factory=dict)  # run.json, written by publish_run
    listing: bytes = b""  # the images the children inspect (summary/run=<id>/listing.jsonl)
    notes: list[str] = field(default_factory=list)  # what the submitter tells the user (skipped specs)
    s3: S3Access | None = field(default=None, repr=False)


@dataclass
class Submitted:
    plan: SubmitPlan
    array_job_id: str
    merge_job_id: str


def shard_count(images: int, requested: int | None, images_per_shard: int) -> int:
    """``requested`` if given, else one shard per ``images_per_shard`` images; never more
    shards than images (an empty shard is a container started for nothing) or than Batch allows."""
    if requested is not None:
        if not 1 <= requested <= MAX_ARRAY_SIZE:
            raise SubmitError(f"--shards {requested}: AWS Batch runs 1..{MAX_ARRAY_SIZE} shards")
        if requested > images:
            raise SubmitError(f"--shards {requested} is more than the {images} image(s) to inspect")
        return requested
    return max(1, min(MAX_ARRAY_SIZE, images, math.ceil(images / max(1, images_per_shard))))


def out_uri(out_base: str) -> str:
    """Where a run's files go: the layout of :mod:`station.batch.layout` right under ``--out``
    (``results/date=/station=/recipe=/``, ``summary/run=<id>/``, ``reports/run=<id>/``), as
    for a local run, so one Athena table over ``<out>/results/`` covers every run. The
    template's BatchOutPrefix grants the job role exactly those three folders."""
    bucket, prefix = split_s3_uri(out_base)
    return f"s3://{bucket}/{prefix + '/' if prefix else ''}"


def _model_uri(spec: str, models_base: str, data_dir: Path, s3: S3Access, cache_dir: Path
               ) -> tuple[str, bool, ModelRef]:
    if is_model_uri(spec):
        parse_model_uri(spec)
        local = resolve_model_uri(spec, cache_dir, s3)  # it must exist and verify before children try
        return spec.rstrip("/") + "/", False, resolve_model(str(local), data_dir)
    ref = resolve_model(spec, data_dir)
    loc, uploaded = upload_model(ref.root / ref.name, models_base, s3)
    return loc.uri, uploaded, ref


def plan_submission(inputs: list[str], model: str, *, out_base: str, data_dir: Path, s3: S3Access,
                    models_base: str | None = None, shards: int | None = None, run_id: str | None = None,
                    date: str | None = None, images_per_shard: int = DEFAULT_IMAGES_PER_SHARD,
                    child_options: list[str] | None = None, s3_endpoint: str | None = None,
                    requested: Requested | None = None) -> SubmitPlan:
    """Validate, list, upload the model, pick the profiles and build both container
    commands and the run manifest (nothing of the run is written, no job yet)."""
    if not inputs:
        raise SubmitError("AWS Batch children read their images from S3: give s3://bucket/prefix inputs")
    local = [i for i in inputs if not i.startswith("s3://")]
    if local:
        raise SubmitError(f"{local[0]!r}: AWS Batch children read their images from S3 only; "
                          f"upload the folder and give its s3:// prefix")
    if not out_base.startswith("s3://"):
        raise SubmitError(f"--out {out_base!r}: with --executor aws-batch the results go to S3: --out s3://bucket/prefix")
    try:
        bucket, _ = split_s3_uri(out_base)
        for uri in inputs:
            split_s3_uri(uri)
        run_id = check_run_id(run_id or new_run_id())
    except LayoutError as exc:
        raise SubmitError(str(exc)) from None
    requested = requested or Requested()
    settings = fresh_settings(requested)
    items = collect(inputs, s3=s3, recipe=settings.recipe, station=settings.station, lot=settings.lot)
    if not items:
        raise SubmitError(f"no images under {', '.join(inputs)}: nothing to submit")
    n = shard_count(len(items), shards, images_per_shard)
    out = out_uri(out_base)
    if _exists(s3, OutLocation.parse(out), run_manifest_key(run_id)):
        raise SubmitError(f"run {run_id} already exists under {out}; choose a new --run-id")
    notes: list[str] = []
    try:
        settings = with_profiles(settings, {i.recipe for i in items}, requested, data_dir, notes.append)
    except (ProfileShipError, ModelChoiceError) as exc:
        raise SubmitError(str(exc)) from None
    models_base = models_base or f"s3://{bucket}"
    model_uri, uploaded, model_ref = _model_uri(model, models_base, data_dir, s3,
                                                Path(data_dir) / "batch" / "model-cache")
    date = date or datetime.now(timezone.utc).strftime("%Y-%m-%d")
    endpoint = ["--s3-endpoint", s3_endpoint] if s3_endpoint else []
    # --resume: an AWS Batch retry (RetryStrategy) is a fresh container with empty staging; it
    # fetches the shard's uploaded results and inspects only the rest instead of starting over.
    # No --recipe/--station/--lot/--profile: the children take the settings from run.json.
    child = ["batch", *inputs, "--model", model_uri, "--out", out, "--shards", str(n), "--run-id", run_id,
             "--date", date, "--resume", "--no-report", *endpoint, *(child_options or [])]
    merge = ["batch-merge", out, "--run-id", run_id, "--model", model_uri, *endpoint]
    env = {"LINESTATION_RUN_ID": run_id, "LINESTATION_BATCH_OUT": out}
    listing = listing_bytes(items)
    manifest = {
        "run_id": run_id, "created_at": utc_now_iso(), "date": date, "executor": "aws-batch",
        "model": {**model_ref.to_json(), "path": model_uri}, "inputs": list(inputs), "shards": n, "compare": False,
        "settings": settings.to_json(),
        "listing": {"key": run_listing_key(run_id), "images": len(items), "sha256": hashlib.sha256(listing).hexdigest()},
    }
    return SubmitPlan(run_id, list(inputs), len(items), n, model_uri, uploaded, out, date, child, merge, env,
                      manifest=manifest, listing=listing, notes=notes, s3=s3)


def _exists(s3: S3Access, out: OutLocation, key: str) -> bool:
    return any(o["Key"] == out.s3_key(key) for o in s3.list(out.bucket, out.s3_key(key)))


def publish_run(plan: SubmitPlan) -> None:
    """Write what the children read before any of them can start: the shipped calibration
    profiles, the image listing, and last the run manifest that names both by hash."""
    out = OutLocation.parse(plan.out_uri)

    def put(key: str, data: bytes, content_type: str, if_none_match: bool = False) -> None:
        plan.s3.put_bytes(out.bucket, out.s3_key(key), data, content_type, if_none_match=if_none_match)

    settings = plan.manifest["settings"]
    try:
        settings["profiles"] = ship_profiles(settings["profiles"], plan.run_id, put)
        put(plan.manifest["listing"]["key"], plan.listing, "application/x-ndjson")
        put(run_manifest_key(plan.run_id), (json.dumps(plan.manifest, indent=2, sort_keys=True) + "\n").encode(),
            "application/json", if_none_match=True)  # a run started since the check above is not overwritten
    except (ProfileShipError, S3AccessError, OSError) as exc:
        raise SubmitError(f"run {plan.run_id}: writing its manifest under {plan.out_uri} failed ({exc}); "
                          f"nothing was submitted") from None


def _job_name(run_id: str, suffix: str = "") -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"linestation-{run_id}{suffix}")[:128]


def submit(plan: SubmitPlan, target: BatchTarget) -> Submitted:
    """Write the run's manifest, listing and profiles, then submit the array (or single)
    job and the merge job that depends on it."""
    publish_run(plan)
    batch = client("batch", target.endpoint)
    env = [{"name": k, "value": v} for k, v in sorted(plan.environment.items())]
    tags = {"linestation:run_id": plan.run_id}
    array_args: dict[str, Any] = {}
    if plan.shards > 1:
        array_args["arrayProperties"] = {"size": plan.shards}
    try:
        array = batch.submit_job(jobName=_job_name(plan.run_id), jobQueue=target.job_queue,
                                 jobDefinition=target.job_definition, tags=tags, propagateTags=True,
                                 containerOverrides={"command": plan.child_command, "environment": env},
                                 **array_args)
    except Exception as exc:
        raise SubmitError(f"submit_job (inspect) to {target.job_queue}: {describe_error(exc)}; run {plan.run_id}'s "
                          f"manifest is written but no job runs it: submit again with a new --run-id") from exc
    try:
        merge = batch.submit_job(jobName=_job_name(plan.run_id, "-merge"), jobQueue=target.job_queue,
                                 jobDefinition=target.job_definition, tags=tags, propagateTags=True,
                                 dependsOn=[{"jobId": array["jobId"]}],
                                 containerOverrides={"command": plan.merge_command, "environment": env})
    except Exception as exc:
        raise SubmitError(f"the inspect job {array['jobId']} was submitted, but the merge job was not "
                          f"({describe_error(exc)}); run `linestation batch-merge {plan.out_uri} --run-id "
                          f"{plan.run_id}` when it has finished") from exc
    return Submitted(plan, array["jobId"], merge["jobId"])


def follow_text(done: Submitted) -> str:
    p = done.plan
    kind = f"array job of {p.shards} shards" if p.shards > 1 else "job (1 shard)"
    lines = [
        f"run {p.run_id}: {p.images} image(s) in {kind}; model {p.model_uri}"
        f" ({'uploaded' if p.model_uploaded else 'already on S3'})",
        f"inspect job: {done.array_job_id}",
        f"merge job:   {done.merge_job_id} (starts when every shard has finished)",
        "follow with:",
        f"  aws batch describe-jobs --jobs {done.array_job_id} {done.merge_job_id}",
    ]
    if p.shards > 1:
        lines.append(f"  aws batch list-jobs --array-job-id {done.array_job_id} --job-status FAILED")
    lines += ["  aws logs tail /linestation/batch --follow",
              f"results: {p.out_uri}  (summary/run={p.run_id}/summary.json, reports/run={p.run_id}/report.html)",
              # a dependent job goes FAILED when a dependency fails: the merge never runs then
              "if a shard fails (after its retry), the merge job fails too; merge what was written with:",
              f"  linestation {shlex.join(p.merge_command)}"]
    return "\n".join(lines)


def target_from(args: argparse.Namespace, cfg: Any = None) -> BatchTarget:
    """Queue and job definition from the flags, else the config's ``aws_batch`` section."""
    section = getattr(cfg, "aws_batch", None) if cfg is not None else None
    queue = getattr(args, "job_queue", None) or (section.job_queue if section else None)
    definition = getattr(args, "job_definition", None) or (section.job_definition if section else None)
    if not queue or not definition:
        raise SubmitError("--executor aws-batch needs --job-queue and --job-definition "
                          "(or aws_batch.job_queue / job_definition in --config)")
    region = getattr(args, "region", None) or (section.region if section else None) or "us-east-1"
    url = getattr(args, "batch_endpoint", None) or (section.endpoint_url if section else None)
    return BatchTarget(queue, definition, AwsEndpoint(region=region, endpoint_url=url, read_timeout_s=30.0))


def submit_from_cli(args: argparse.Namespace, opts: Any) -> int:
    """The ``--executor aws-batch`` branch of ``linestation batch`` (opts: BatchOptions)."""
    from station.commands.common import EXIT_FAIL, EXIT_OK, load_config_or_report

    cfg = load_config_or_report(args.config) if getattr(args, "config", None) else None
    section = getattr(cfg, "aws_batch", None)
    try:
        if opts.query is not None:
            raise SubmitError("AWS Batch children cannot read this machine's record: give s3:// inputs")
        if opts.compare or opts.resume or args.shard is not None:
            raise SubmitError("--compare, --resume and --shard are for local runs, not --executor aws-batch")
        target = target_from(args, cfg)
        child_options = ["--workers", "auto" if opts.workers is None else str(opts.workers), "--threads", str(opts.threads)]
        out = args.out if args.out.startswith("s3://") or section is None or not section.out else section.out
        plan = plan_submission(opts.inputs, opts.model, out_base=out, data_dir=opts.data_dir,
                               s3=S3Access(opts.s3), models_base=getattr(args, "models_uri", None)
                               or (section.models_uri if section else None), shards=opts.shards if args.shards else None,
                               run_id=args.run_id, date=opts.date,
                               images_per_shard=section.images_per_shard if section else DEFAULT_IMAGES_PER_SHARD,
                               child_options=child_options, s3_endpoint=opts.s3.endpoint_url if opts.s3 else None,
                               requested=opts.requested)
        for note in plan.notes:
            print(f"linestation batch: {note}", file=sys.stderr, flush=True)
        done = submit(plan, target)
    except (SubmitError, ModelUriError, ModelChoiceError, S3AccessError, InputError) as exc:
        print(f"linestation batch: {exc}", file=sys.stderr)
        return EXIT_FAIL
    print(follow_text(done), flush=True)
    return EXIT_OK
