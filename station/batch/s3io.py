"""S3 access for batch runs: list and read input images, download and upload result files.

Goes through :mod:`station.aws_client` (the only boto3 module). Endpoint and credentials
come from an :class:`~station.aws_client.AwsEndpoint` - built from the station config's
``sync.s3`` section, ``--s3-endpoint``, or left to the usual AWS chain (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``..., instance / task role) as on AWS Batch.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from station.aws_client import AwsEndpoint, client, describe_error, error_code, http_status
from station.durable import fsync_dir, write_synced


class S3AccessError(RuntimeError):
    """An S3 call failed; the message names the bucket, key and the service's answer."""


class S3PreconditionFailed(S3AccessError):
    """A conditional call's condition did not hold (HTTP 412): the object exists already
    (``IfNoneMatch``) or is no longer the one named by its ETag (``IfMatch``)."""


def _not_found(exc: BaseException) -> bool:
    return error_code(exc) in ("NoSuchKey", "404", "NotFound") or http_status(exc) == 404


def _precondition_failed(exc: BaseException) -> bool:
    # 409 ConditionalRequestConflict: AWS's answer to two conditional writes racing on one key
    return (error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict")
            or http_status(exc) in (409, 412))


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

    def get(self, bucket: str, key: str, if_match: str | None = None) -> bytes:
        """The object's bytes; ``if_match`` (the ETag a listing saw): only that version of
        it, else :class:`S3PreconditionFailed` - an image replaced since it was listed must
        not be inspected under the listed image's id."""
        extra = {"IfMatch": if_match} if if_match else {}
        try:
            return self.client.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
        except Exception as exc:
            if if_match and _precondition_failed(exc):
                raise S3PreconditionFailed(f"s3://{bucket}/{key} changed since listing (ETag no longer "
                                           f"{if_match})") from exc
            raise S3AccessError(f"cannot read s3://{bucket}/{key}: {describe_error(exc)}") from exc

    def get_or_none(self, bucket: str, key: str) -> bytes | None:
        """The object, or None when it does not exist (404 / NoSuchKey only: any other
        failure - access denied, network, 5xx - raises, since "missing" must not be guessed)."""
        try:
            return self.get(bucket, key)
        except S3AccessError as exc:
            if exc.__cause__ is not None and _not_found(exc.__cause__):
                return None
            raise

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str, *,
                  if_none_match: bool = False) -> None:
        """Put one object; ``if_none_match``: only if no object has that key yet, else
        :class:`S3PreconditionFailed` (first writer wins, as a local ``os.link``)."""
        extra = {"IfNoneMatch": "*"} if if_none_match else {}
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, **extra)
        except Exception as exc:
            cls = S3PreconditionFailed if if_none_match and _precondition_failed(exc) else S3AccessError
            raise cls(f"cannot write s3://{bucket}/{key}: {describe_error(exc)}") from exc

    def download(self, bucket: str, key: str, dest: Path) -> None:
        """Fetch one object into ``dest`` durably (temp file, fsync, rename)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        write_synced(tmp, self.get(bucket, key))
        tmp.replace(dest)
        fsync_dir(dest.parent)
