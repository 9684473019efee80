"""One batch run (or one shard of it), start to finish.

resolve the model -> lock the shard -> the run's settings and images (from its manifest
when it exists: an AWS run's submitter wrote them) -> claim the manifest -> keep this
shard's -> read back what this shard already wrote (``--resume``; torn tail repaired) ->
inspect the rest in workers, appending each row durably -> shard summary, merged summary, report,
upload. Interrupted (SIGINT / SIGTERM: ``stop``), it finishes the images in flight, writes
a partial summary and returns; killed (SIGKILL, crash), the rows on disk are the ledger.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from station.aws_client import AwsEndpoint
from station.batch import inputs as inputs_mod
from station.batch.inputs import ImageItem, InputError, RecordQuery
from station.batch.layout import (
    OutLocation,
    check_date,
    check_run_id,
    new_run_id,
    report_key,
    run_manifest_key,
    shard_summary_key,
    summary_key,
)
from station.batch.ledger import ResultWriter, load_done, shard_files
from station.batch.model_uri import local_model_spec
from station.batch.models import ProfileRef, resolve_model
from station.batch.output import RunOutput
from station.batch.profiles import ProfileShipError, profile_ref, ship_profiles
from station.batch.progress import ProgressLine
from station.batch.rows import utc_now_iso
from station.batch.s3io import S3Access, S3AccessError
from station.batch.settings import (
    InspectionSettings,
    Requested,
    SettingsConflict,
    fresh_settings,
    settings_of_manifest,
    with_profiles,
)
from station.batch.shard_lock import ShardLock, ShardLocked
from station.batch.summary import format_matrix, merge, summarize
from station.batch.workers import WorkerFailed, WorkerPool, WorkerSpec, auto_workers, run_in_process

log = logging.getLogger(__name__)
UPLOAD_EVERY_S = 120.0


class BatchError(RuntimeError):
    """The run cannot start or continue; the message says why and what to do."""


@dataclass
class BatchOptions:
    inputs: list[str]
    model: str
    data_dir: Path
    out: str = "batch-results"
    query: RecordQuery | None = None
    workers: int | None = 1  # None: auto_workers (one per core, fewer for a short run)
    threads: int = 1
    processes: bool | None = None  # None: worker processes when workers > 1
    resume: bool = False
    shard: int = 0
    shards: int = 1
    run_id: str | None = None
    date: str | None = None
    compare: bool = False
    # inspection settings; None: not given (taken from the run's manifest, else the default)
    station: str | None = None
    recipe: str | None = None
    lot: str | None = None
    profile: str | None = None
    no_spec: bool = False
    policy: dict[str, float] | None = None
    s3: AwsEndpoint | None = None
    report: bool = True
    stderr: TextIO | None = None
    upload_every_s: float = UPLOAD_EVERY_S  # S3 outputs: periodic upload of the shard's results

    @property
    def requested(self) -> Requested:
        return Requested(station=self.station, recipe=self.recipe, lot=self.lot, policy=self.policy,
                         no_spec=self.no_spec, profile=self.profile)


@dataclass
class BatchResult:
    run_id: str
    shard: int
    out: str
    summary: dict[str, Any]
    merged: dict[str, Any] | None
    interrupted: bool = False
    failed: str | None = None
    report: str | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 130 if self.interrupted else 0


def _say(opts: BatchOptions, msg: str) -> None:
    print(msg, file=opts.stderr or sys.stderr, flush=True)


def _list_items(opts: BatchOptions, s3: S3Access | None, settings: InspectionSettings,
                manifest: dict[str, Any] | None, output: RunOutput) -> tuple[list[ImageItem], list[str]]:
    items: list[ImageItem] = []
    described = list(opts.inputs)
    if manifest is not None and manifest.get("listing"):
        return _listed_items(opts, settings, manifest, output), list(manifest.get("inputs") or described)
    if opts.inputs:
        items += inputs_mod.collect(opts.inputs, s3=s3, recipe=settings.recipe, station=settings.station,
                                    lot=settings.lot)
    if opts.query is not None:
        items += inputs_mod.list_record(opts.data_dir, opts.query)
        described.append(opts.query.describe())
    if opts.compare:
        items, matched = inputs_mod.attach_line_decisions(items, opts.data_dir)
        if matched:
            _say(opts, f"compare: {matched} image(s) matched to their line inspection by name")
    if not items:
        raise InputError(f"no images in {', '.join(described) or 'the inputs'}")
    return items, described


def _listed_items(opts: BatchOptions, settings: InspectionSettings, manifest: dict[str, Any],
                  output: RunOutput) -> list[ImageItem]:
    """An AWS run's images: the listing its submitter counted (hash-checked), not a new
    listing of the prefix, so an object added during the run is inspected by no shard
    rather than by the shards that happened to list it."""
    listing = manifest["listing"]
    if opts.inputs and list(opts.inputs) != list(manifest.get("inputs") or []):
        raise BatchError(f"run {manifest.get('run_id')} inspects {manifest.get('inputs')}, not {opts.inputs}: "
                         f"use a new --run-id for other inputs")
    try:
        data = output.read_bytes(listing["key"])
    except (OSError, S3AccessError) as exc:
        raise BatchError(f"run {manifest.get('run_id')}: cannot read its image listing {listing['key']}: {exc}") from None
    if hashlib.sha256(data).hexdigest() != listing["sha256"]:
        raise BatchError(f"run {manifest.get('run_id')}: {listing['key']} does not match the run manifest "
                         f"(sha256 {hashlib.sha256(data).hexdigest()[:12]}, recorded {listing['sha256'][:12]})")
    items = inputs_mod.items_from_listing(data, listing["key"], recipe=settings.recipe, station=settings.station,
                                          lot=settings.lot)
    if len(items) != int(listing["images"]):
        raise BatchError(f"run {manifest.get('run_id')}: {listing['key']} lists {len(items)} image(s), "
                         f"the manifest {listing['images']}")
    return items


def _profile_refs(opts: BatchOptions, settings: InspectionSettings, recipes: set[str],
                  output: RunOutput, run_id: str) -> dict[str, ProfileRef | None]:
    """Each recipe's loadable profile as the manifest pins it (shipped ones fetched and
    verified); a recipe the manifest does not know (a record that grew since) is skipped."""
    refs: dict[str, ProfileRef | None] = {}
    cache: dict[str, ProfileRef] = {}
    for recipe in sorted(recipes):
        desc = settings.profiles.get(recipe) if settings.spec else None
        if settings.spec and recipe not in settings.profiles:
            _say(opts, f"spec checks skipped for recipe {recipe!r}: the run began without it, so no profile was pinned")
        if desc is None:
            refs[recipe] = None
            continue
        try:
            ref = cache.get(desc["content_hash"]) or profile_ref(desc, opts.data_dir, output.read_bytes, run_id)
        except (ProfileShipError, S3AccessError, OSError) as exc:
            raise BatchError(f"calibration profile of recipe {recipe!r}: {exc}") from None
        refs[recipe] = cache[desc["content_hash"]] = ref
    return refs


def _check_options(opts: BatchOptions) -> None:
    if opts.shards < 1 or not 0 <= opts.shard < opts.shards:
        raise BatchError(f"--shard {opts.shard} is not in 0..{opts.shards - 1} (--shards {opts.shards})")
    if (opts.workers is not None and opts.workers < 1) or opts.threads < 1:
        raise BatchError("--workers and --threads must be >= 1")
    if opts.date is not None:
        check_date(opts.date)


def _run_settings(opts: BatchOptions, manifest: dict[str, Any] | None, where: str) -> InspectionSettings | None:
    try:
        return settings_of_manifest(manifest, opts.requested, opts.data_dir, where) if manifest else None
    except SettingsConflict as exc:
        raise BatchError(str(exc)) from None


def run_batch(opts: BatchOptions, stop: threading.Event | None = None) -> BatchResult:
    """Run one shard of a batch; raises BatchError / InputError / ModelChoiceError before
    any image is inspected when the run cannot start (another process on the same run and
    shard included: it holds the shard's lock)."""
    stop = stop or threading.Event()
    _check_options(opts)
    out_loc = OutLocation.parse(opts.out)
    s3 = S3Access(opts.s3) if opts.s3 is not None else S3Access()
    output = RunOutput(out_loc, opts.data_dir, s3)
    model = resolve_model(local_model_spec(opts.model, opts.data_dir, s3), opts.data_dir)  # s3:// models too

    run_id = opts.run_id
    if run_id is None and opts.resume:
        run_id = output.latest_run_id()
        if run_id is None:
            raise BatchError(f"--resume: no earlier run under {out_loc}; pass --run-id")
        _say(opts, f"resuming run {run_id}")
    run_id = check_run_id(run_id or new_run_id())
    output.bind(run_id)
    try:
        lock = ShardLock.acquire(output.root, run_id, opts.shard)
    except ShardLocked as exc:
        raise BatchError(str(exc)) from None
    with lock:  # held until the shard's files are written and uploaded
        return _run_locked(opts, stop, output, out_loc, s3, model, run_id)


def _run_locked(opts: BatchOptions, stop: threading.Event, output: RunOutput, out_loc: OutLocation,
                s3: S3Access, model: Any, run_id: str) -> BatchResult:
    where = f"{out_loc}/{run_manifest_key(run_id)}"
    existing = output.read_json(run_manifest_key(run_id))
    settings = _run_settings(opts, existing, where) or fresh_settings(opts.requested)
    items, described = _list_items(opts, s3, settings, existing, output)
    if existing is None or existing.get("settings") is None:  # a new run pins its profiles
        try:
            settings = with_profiles(settings, {i.recipe for i in items}, opts.requested, opts.data_dir,
                                     lambda msg: _say(opts, msg))
            if out_loc.is_s3:  # shipped with the run: a shard or resume on another machine uses them
                settings = dataclasses.replace(settings, profiles=ship_profiles(
                    settings.profiles, run_id, output.put_profile_file))
        except (ProfileShipError, S3AccessError, OSError) as exc:
            raise BatchError(str(exc)) from None
    proposed = {
        "run_id": run_id, "created_at": utc_now_iso(),
        "date": opts.date or datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "model": model.to_json(), "inputs": described, "shards": opts.shards, "compare": opts.compare,
        "settings": settings.to_json(),
    }
    manifest = output.claim_manifest(run_id, proposed)
    if manifest is not proposed:  # another shard claimed the run between our read and our claim:
        # its settings (and listing) win, so the items are listed again under them - items
        # built from our own defaults would file rows under another station / recipe
        settings = _run_settings(opts, manifest, where) or settings
        items, described = _list_items(opts, s3, settings, manifest, output)
    mine = list(inputs_mod.select_shard(items, opts.shard, opts.shards))
    if manifest["model"]["model_hash"] != model.model_hash:
        raise BatchError(f"run {run_id} was started with model {manifest['model']['model_id']} "
                         f"(hash {manifest['model']['model_hash'][:12]}), not {model.model_id}: "
                         f"use a new --run-id for another model")
    if int(manifest.get("shards", 1)) != opts.shards:
        raise BatchError(f"run {run_id} was started with --shards {manifest.get('shards')}, not {opts.shards}: "
                         f"a different count would move images between shards")
    if opts.date is not None and opts.date != manifest["date"]:
        raise BatchError(f"run {run_id} writes the date partition {manifest['date']}, not --date {opts.date}: "
                         f"drop --date to continue it, or use a new --run-id")
    date = manifest["date"]

    # S3 outputs: fetch the shard's uploaded results first, resume or not, so that a re-run
    # on another machine (no staging) sees them and is refused instead of overwriting them
    fetched = output.fetch_shard(run_id, opts.shard, date)
    if fetched:
        _say(opts, f"fetched {fetched} result file(s) of shard {opts.shard} from {out_loc}")
    done, repairs = load_done(output.root, run_id, opts.shard)
    if done and not opts.resume:
        raise BatchError(f"run {run_id} shard {opts.shard} already has {len(done)} result(s) in "
                         f"{out_loc if out_loc.is_s3 else output.root}; pass --resume to continue it, "
                         f"or a new --run-id")
    for r in repairs:
        _say(opts, f"repaired {r.path.name}: cut a torn last line ({r.dropped_bytes} bytes)")
    pending = [i for i in mine if i.image_id not in done]
    workers = opts.workers or auto_workers(len(pending), opts.threads)
    profiles = _profile_refs(opts, settings, {i.recipe for i in mine}, output, run_id)
    spec = WorkerSpec(model=model, profiles=profiles, policy=dict(settings.policy), run_id=run_id,
                      shard=opts.shard, threads=opts.threads, s3=opts.s3)
    _say(opts, f"run {run_id} shard {opts.shard}/{opts.shards}: {len(mine)} of {len(items)} image(s), "
               f"{len(mine) - len(pending)} already done; model {model.model_id} v{model.model_version}; "
               f"{workers} worker(s); results in {out_loc}")

    started_at, t0 = utc_now_iso(), time.perf_counter()
    writer = ResultWriter(output.root, run_id, opts.shard, date)
    progress = ProgressLine(len(mine), stream=opts.stderr, already=len(mine) - len(pending))
    new_rows: list[dict[str, Any]] = []
    row_done_at: list[float] = []  # perf_counter per new row: the after-start rate counts only
    last_upload = time.monotonic()  # rows finished once every worker was ready

    def emit(row: dict[str, Any]) -> None:
        nonlocal last_upload
        writer.write(row)
        new_rows.append({k: row.get(k) for k in ("image_id", "image", "part_id", "decision", "error", "score",
                                                 "confidence", "spec_checked", "line_decision", "inspection_id")})
        row_done_at.append(time.perf_counter())
        progress.update(error=bool(row.get("error")))
        if out_loc.is_s3 and time.monotonic() - last_upload > opts.upload_every_s:
            writer.sync()
            try:
                output.upload_shard(run_id, opts.shard)
            except S3AccessError as exc:  # the rows are on disk; the next interval tries again
                log.warning("periodic upload failed: %s", exc)
                _say(opts, f"upload failed, retrying in {opts.upload_every_s:.0f} s: {exc}")
            last_upload = time.monotonic()

    failed = None
    rate_from: float | None = None
    try:
        use_pool = opts.processes if opts.processes is not None else workers > 1
        if pending and use_pool:  # (nothing pending - a finished run resumed - loads no model)
            pool = WorkerPool(spec, workers)
            try:
                pool.run(pending, emit, stop)
            finally:
                rate_from = pool.ready_at
        elif pending:
            rate_from = run_in_process(spec, pending, emit, stop)
    except WorkerFailed as exc:
        failed = str(exc)
    finally:
        writer.close()
        progress.finish()
    elapsed = time.perf_counter() - t0
    busy = time.perf_counter() - (rate_from or t0)
    # a worker that loaded its model first inspects while the others still load: those rows
    # would flatter a rate timed from "all ready", so they are left out of it
    after_start = sum(1 for t in row_done_at if t >= (rate_from or t0))
    all_rows = list(done.values()) + new_rows
    complete = failed is None and not stop.is_set() and len(all_rows) >= len(mine)
    summary = summarize(
        all_rows, run_id=run_id, shard=opts.shard, shards=opts.shards, date=date, complete=complete,
        interrupted=stop.is_set(), failed=failed, model=model.to_json(), inputs=described,
        images_listed=len(mine), inspected_this_session=len(new_rows), resumed_from=len(done),
        spec_profiles={r: (p.identity if p else None) for r, p in profiles.items()},
        settings=settings.to_json(),
        workers=workers, threads=opts.threads, elapsed_s=round(elapsed, 3),
        images_per_s=round(len(new_rows) / elapsed, 3) if elapsed > 0 else None,
        images_per_s_after_start=round(after_start / busy, 3) if busy > 0 and after_start else None,
        started_at=started_at, finished_at=utc_now_iso(),
        result_files=[p.relative_to(output.root).as_posix() for p in shard_files(output.root, run_id, opts.shard)],
    )
    try:  # the final upload must succeed: without it S3 lacks rows the summary counts
        output.upload_shard(run_id, opts.shard)
        output.write_json(shard_summary_key(run_id, opts.shard), summary)
        merged = merge(output.shard_summaries(run_id) or [summary])
        output.write_json(summary_key(run_id), merged)
    except S3AccessError as exc:
        raise BatchError(f"run {run_id} shard {opts.shard}: the results are written in {output.root} but the "
                         f"upload to {out_loc} failed ({exc}); run the same command with --resume "
                         f"--run-id {run_id} to upload them") from exc
    result = BatchResult(run_id, opts.shard, str(out_loc), summary, merged, interrupted=stop.is_set(), failed=failed)
    if opts.report and opts.shards == 1 and complete:
        result.report = _write_report(output, run_id, model, merged, opts, s3)
    _print_summary(opts, summary, merged, output)
    return result


def _write_report(output: RunOutput, run_id: str, model, merged: dict[str, Any], opts: BatchOptions,
                  s3: S3Access) -> str | None:
    """The HTML shift / lot report next to the results; ``s3`` reads ``s3://`` input images
    for the worst items (an S3 input with a local output still shows its images)."""
    from station.batch.ledger import read_rows
    from station.batch.merge import image_loader
    from station.batch.report import detector_heatmaps, write_report

    rows = (row for path in shard_files(output.root, run_id, 0) for row in read_rows(path))
    key = report_key(run_id)
    try:
        path = write_report(rows, (output.root / key).parent, title=f"Batch {run_id}",
                            metadata={"run_id": run_id, "model": model.model_id, "inputs": merged.get("inputs")},
                            load_image=image_loader(s3), heatmap_for=detector_heatmaps(model.load()))
        output.upload_file(key, "text/html")
    except Exception as exc:  # the results are written; a report problem must not hide them
        log.exception("report failed")
        _say(opts, f"report not written: {type(exc).__name__}: {exc}")
        return None
    return str(path)


def _print_summary(opts: BatchOptions, summary: dict[str, Any], merged: dict[str, Any], output: RunOutput) -> None:
    d = summary["decisions"]
    y = summary["yield"]
    state = "complete" if summary["complete"] else ("interrupted" if summary["interrupted"] else "incomplete")
    _say(opts, f"{summary['images']} image(s) {state}: {d['pass']} pass, {d['reject']} reject, {d['review']} review, "
               f"{d['check_capture']} check capture; yield {'n/a' if y is None else f'{100 * y:.1f}%'}; "
               f"{summary['errors']} error(s); {summary['images_per_s'] or 0:.1f} img/s this session")
    if summary["failed"]:
        _say(opts, f"stopped: {summary['failed']}")
    if summary["compare"]:
        _say(opts, format_matrix(summary["compare"]))
    if not summary["complete"]:
        _say(opts, f"continue with: --resume --run-id {summary['run_id']}")
