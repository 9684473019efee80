"""S3 access for batch runs: list and read input images, download and upload result files.

Goes through :mod:`station.aws_client` (the only boto3 module). Endpoint and credentials
come from an :class:`~station.aws_client.AwsEndpoint` - built from the station config's
``sync.s3`` section, ``--s3-endpoint``, or left to the usual AWS chain (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``..., instance / task role) as on AWS Batch.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from station.aws_client import AwsEndpoint, client, describe_error
from station.durable import fsync_dir, write_synced


class S3AccessError(RuntimeError):
    """An S3 call failed; the message names the bucket, key and the service's answer."""


class S3Access:
    """One client per process (boto3 clients are not shared across processes)."""

    def __init__(self, endpoint: AwsEndpoint | None = None) -> None:
        self.endpoint = endpoint or AwsEndpoint(read_timeout_s=60.0, max_attempts=4)
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = client("s3", self.endpoint)
        return self._client

    def list(self, bucket: str, prefix: str) -> Iterator[dict]:
        """Every object under ``prefix``: dicts with Key, Size, ETag, LastModified."""
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                yield from page.get("Contents", [])
        except Exception as exc:
            raise S3AccessError(f"cannot list s3://{bucket}/{prefix}: {describe_error(exc)}") from exc

    def get(self, bucket: str, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            raise S3AccessError(f"cannot read s3://{bucket}/{key}: {describe_error(exc)}") from exc

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
        except Exception as exc:
            raise S3AccessError(f"cannot write s3://{bucket}/{key}: {describe_error(exc)}") from exc

    def download(self, bucket: str, key: str, dest: Path) -> None:
        """Fetch one object into ``dest`` durably (temp file, fsync, rename)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        write_synced(tmp, self.get(bucket, key))
        tmp.replace(dest)
        fsync_dir(dest.parent)
