"""``linestation batch-merge`` and ``batch-report``: the steps after the shards of a batch run.

``batch-merge OUT --run-id ID``  merges every shard's summary and rows of a run under OUT
(a folder or s3://bucket/prefix) into summary.json and report.html: the last job of an
AWS Batch run, or by hand after local shards. Non-zero when shards are missing.
``batch-report OUT [--run-id ID]``  rewrites only the HTML report (other options).

Also the ``--executor aws-batch`` flags of ``linestation batch`` (:func:`add_aws_batch_arguments`).
Imports stay inside the functions: ``linestation --help`` must not load boto3 or the models.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from station.commands.common import EXIT_FAIL, EXIT_OK


def add_aws_batch_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``linestation batch --executor aws-batch`` (see station/batch/aws_batch.py)."""
    g = p.add_argument_group("AWS Batch (--executor aws-batch; also the config's aws_batch section)")
    g.add_argument("--job-queue", default=None, help="job queue name or ARN (stack output BatchJobQueue)")
    g.add_argument("--job-definition", default=None, help="job definition (stack output BatchJobDefinition)")
    g.add_argument("--models-uri", default=None,
                   help="s3://bucket[/prefix] the model is uploaded under (models/<id>/<version>/); default: --out's bucket")
    g.add_argument("--batch-endpoint", default=None, help="AWS Batch API endpoint URL (default: AWS)")


def register(sub: argparse._SubParsersAction) -> None:
    for name, doc in (("batch-merge", "merge a batch run's shards: summary.json and report.html"),
                      ("batch-report", "(re)write the HTML report of a batch run")):
        p = sub.add_parser(name, help=doc, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("out", metavar="RESULTS", help="the run's output folder or s3://bucket/prefix")
        p.add_argument("--run-id", default=None, help="the run (default: the only run there)")
        p.add_argument("--model", default=None,
                       help="model to recompute the worst items' heatmaps (id, directory or s3://.../models/ID/VERSION/)")
        p.add_argument("--title", default=None)
        p.add_argument("--s3-endpoint", default=None, help="S3 endpoint URL (default: $AWS_ENDPOINT_URL or AWS)")
        p.add_argument("--region", default=None)
        p.add_argument("--json", action="store_true", help="print the merged summary as one JSON line")
        p.set_defaults(func=run, write_summary=name == "batch-merge")


def load_detector(spec: str, data_dir: Path, s3):
    """A station model from an id / directory (part A's resolver) or an ``s3://`` model URI."""
    from station.batch.model_uri import local_model_spec
    from station.batch.models import resolve_model

    return resolve_model(local_model_spec(spec, data_dir, s3), data_dir).load()


def run(args: argparse.Namespace, data_dir: Path) -> int:
    from station.aws_client import AwsEndpoint
    from station.batch.layout import LayoutError
    from station.batch.merge import MergeError, merge_run
    from station.batch.model_uri import ModelUriError
    from station.batch.models import ModelChoiceError
    from station.batch.s3io import S3Access, S3AccessError
    from station.detect.registry import ModelStoreError

    region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    s3 = S3Access(AwsEndpoint(region=region, endpoint_url=args.s3_endpoint, read_timeout_s=60.0, max_attempts=4))
    name = "batch-merge" if args.write_summary else "batch-report"
    try:
        detector = load_detector(args.model, data_dir, s3) if args.model else None
        result = merge_run(args.out, args.run_id, data_dir=data_dir, s3=s3, detector=detector,
                           write_summary=args.write_summary, title=args.title)
    except (MergeError, LayoutError, ModelUriError, ModelChoiceError, ModelStoreError, S3AccessError) as exc:
        print(f"linestation {name}: {exc}", file=sys.stderr)
        return EXIT_FAIL
    s = result.summary
    y = s.get("yield")
    print(f"run {result.run_id}: {s['images']} image(s) from {len(s['shards_present'])} of {s['shards']} shard(s); "
          f"yield {'n/a' if y is None else f'{100 * y:.1f}%'}; {s['errors']} error(s); report {result.report}",
          file=sys.stderr)
    if s.get("missing_shards"):
        print(f"linestation {name}: shard(s) {s['missing_shards']} have no summary: the run is incomplete "
              f"(rerun them with --shard I --resume --run-id {result.run_id})", file=sys.stderr)
    if args.json:
        print(json.dumps(s, separators=(",", ":")), flush=True)
    return EXIT_OK if result.complete else EXIT_FAIL
