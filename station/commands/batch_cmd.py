"""``linestation batch INPUT... --model MODEL``: re-inspect stored images with the station's cycle.

INPUT: folders, globs, ``s3://bucket/prefix``, or ``record`` (the local record, filtered by
``--since/--until/--lot/--recipe/--decision``; also the default when no INPUT is given).
See docs/batch.md for the output layout, resume, sharding and the Athena table.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

from station.commands.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, load_config_or_report

RECORD_INPUT = "record"
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("batch", help="re-inspect stored images (folders, globs, S3, the local record)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="folder, glob, s3://bucket/prefix, or 'record' (the local record; the default)")
    p.add_argument("--model", required=True, help="model id in the data dir's registry, 'active', or a model directory")
    p.add_argument("--out", default="batch-results", help="output folder or s3://bucket/prefix (default ./batch-results)")
    p.add_argument("--workers", type=_workers, default=None, metavar="N|auto",
                   help="worker processes (default auto: one per core, fewer for a run under ~100 images per core)")
    p.add_argument("--threads", type=int, default=1,
                   help="onnxruntime/OpenCV/BLAS threads per worker (default 1)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run (the latest, or --run-id)")
    p.add_argument("--run-id", default=None, help="name of the run (default: generated; AWS Batch: the job id)")
    p.add_argument("--date", default=None, help="date partition YYYY-MM-DD (default: the run's start, UTC)")
    p.add_argument("--shard", type=int, default=None, help="this process's shard (default $AWS_BATCH_JOB_ARRAY_INDEX or 0)")
    p.add_argument("--shards", type=int, default=None, help="number of shards of the run (default 1)")
    p.add_argument("--executor", choices=("local", "aws-batch"), default="local",
                   help="run here, or submit an AWS Batch array job of --shards children")
    p.add_argument("--compare", action="store_true", help="compare with the decisions recorded at the line")
    q = p.add_argument_group("record query (INPUT 'record')")
    q.add_argument("--since", default=None, help="ISO date/time (UTC) or relative: 8h, 2d, 30m")
    q.add_argument("--until", default=None, help="ISO date/time (UTC), exclusive")
    q.add_argument("--lot", default=None, help="lot (record query filter; the lot of file inputs)")
    q.add_argument("--recipe", default=None, help="recipe (record query filter; the recipe of file inputs)")
    q.add_argument("--decision", action="append", default=[], help="line decision(s): pass, reject, review, check_capture")
    q.add_argument("--station", default=None, help="station (record query filter; the station of file inputs)")
    s = p.add_argument_group("inspection settings")
    s.add_argument("--config", type=Path, default=None,
                   help="station config: station, recipe, decision policy and the S3 endpoint (sync.s3)")
    s.add_argument("--profile", default=None, help="calibration profile (version dir or SERIAL/RECIPE@vN); "
                                                   "default: the data dir's newest for the recipe")
    s.add_argument("--no-spec", action="store_true", help="skip the capture-spec checks")
    s.add_argument("--s3-endpoint", default=None, help="S3 endpoint URL (default: config, $AWS_ENDPOINT_URL or AWS)")
    s.add_argument("--region", default=None)
    s.add_argument("--no-report", action="store_true", help="do not write the HTML report")
    s.add_argument("--json", action="store_true", help="print the run's merged summary as one JSON line on stdout")
    from station.commands.batch_report_cmd import add_aws_batch_arguments

    add_aws_batch_arguments(p)  # --job-queue, --job-definition, ... (station/batch/aws_batch.py)
    p.set_defaults(func=run)


def _workers(text: str) -> int | None:
    """``--workers``: a count >= 1, or ``auto`` (None: decided from the cores and the run's size)."""
    if text.strip().lower() == "auto":
        return None
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor 'auto'") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be >= 1 (or 'auto')")
    return n


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    if not text:
        return None
    m = _RELATIVE.match(text.strip())
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return (now or datetime.now(timezone.utc)) - timedelta(**{unit: float(m.group(1))})
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither an ISO date/time nor a relative time like 8h, 2d") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _shard(args: argparse.Namespace) -> tuple[int, int]:
    env = os.environ.get("AWS_BATCH_JOB_ARRAY_INDEX")
    shards = args.shards or 1
    if args.shard is not None:
        return args.shard, shards
    if env is not None:
        if args.shards is None:
            raise ValueError("AWS_BATCH_JOB_ARRAY_INDEX is set: pass --shards N (the array size)")
        if not env.isdigit():
            raise ValueError(f"AWS_BATCH_JOB_ARRAY_INDEX={env!r} is not a shard number")
        return int(env), shards
    return 0, shards


def _options(args: argparse.Namespace, data_dir: Path):
    from station.aws_client import AwsEndpoint
    from station.batch.inputs import RecordQuery
    from station.batch.rows import DECISIONS
    from station.batch.run import BatchOptions

    cfg = None
    if args.config is not None:
        cfg = load_config_or_report(args.config)
        if cfg is None:
            return None
    inputs = [i for i in args.inputs if i != RECORD_INPUT]
    use_record = RECORD_INPUT in args.inputs or not args.inputs
    if not use_record and (args.since or args.until or args.decision):
        raise ValueError("--since/--until/--decision filter the local record: add the INPUT 'record'")
    decisions = tuple(d.strip() for v in args.decision for d in v.split(",") if d.strip())
    bad = [d for d in decisions if d not in DECISIONS]
    if bad:
        raise ValueError(f"--decision {bad[0]!r}: expected one of {', '.join(DECISIONS)}")
    query = RecordQuery(since=parse_since(args.since), until=parse_since(args.until), lot=args.lot,
                        recipe=args.recipe, decisions=decisions, station=args.station) if use_record else None
    s3cfg = cfg.sync.s3 if cfg is not None else None
    endpoint = AwsEndpoint(
        region=args.region or (s3cfg.region if s3cfg else None) or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        endpoint_url=args.s3_endpoint or (s3cfg.endpoint_url if s3cfg else None),
        access_key_env=s3cfg.access_key_id_env if s3cfg else None,
        secret_key_env=s3cfg.secret_access_key_env if s3cfg else None,
        read_timeout_s=60.0, max_attempts=4)
    shard, shards = _shard(args)
    return BatchOptions(
        inputs=inputs, query=query, model=args.model, data_dir=data_dir, out=args.out, workers=args.workers,
        threads=args.threads, resume=args.resume, shard=shard, shards=shards, run_id=args.run_id, date=args.date,
        compare=args.compare,
        # None: not given, so a run that exists keeps its own (its manifest's) settings
        station=args.station or (cfg.station.station if cfg else None),
        recipe=args.recipe or (cfg.recipe.name if cfg else None),
        lot=args.lot,
        profile=args.profile, no_spec=args.no_spec,
        policy=cfg.recipe.decision.model_dump() if cfg else None, s3=endpoint, report=not args.no_report)


def run(args: argparse.Namespace, data_dir: Path) -> int:
    from station.batch.inputs import InputError
    from station.batch.layout import LayoutError
    from station.batch.ledger import LedgerError
    from station.batch.models import ModelChoiceError
    from station.batch.run import BatchError, run_batch
    from station.batch.s3io import S3AccessError

    try:
        opts = _options(args, data_dir)
    except ValueError as exc:
        print(f"linestation batch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if opts is None:
        return EXIT_FAIL
    if args.executor == "aws-batch":
        return _submit(args, opts)
    stop = threading.Event()

    def on_signal(signum, _frame):
        if stop.is_set():  # a second Ctrl-C: stop now (the rows written so far are kept)
            raise KeyboardInterrupt
        print(f"\nlinestation batch: {signal.Signals(signum).name}: finishing the images in flight ...",
              file=sys.stderr, flush=True)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = run_batch(opts, stop)
    except (BatchError, InputError, ModelChoiceError, LayoutError, LedgerError, S3AccessError) as exc:
        print(f"linestation batch: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except OSError as exc:  # the result writer (disk full, permissions): the rows already written are kept
        print(f"linestation batch: cannot write the results: {exc}; free space or fix the output, "
              f"then run again with --resume", file=sys.stderr)
        return EXIT_FAIL
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if args.json:
        print(json.dumps(result.merged, separators=(",", ":")), flush=True)
    return result.exit_code if result.exit_code != 0 else EXIT_OK


def _submit(args: argparse.Namespace, opts) -> int:
    """``--executor aws-batch``: hand the run to the AWS Batch submitter (station/batch/aws_batch.py)."""
    try:
        from station.batch import aws_batch
    except ImportError:
        print("linestation batch: --executor aws-batch is not available in this installation", file=sys.stderr)
        return EXIT_FAIL
    return int(aws_batch.submit_from_cli(args, opts))
