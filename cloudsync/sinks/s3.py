"""The S3 sink: inspection images (lossless PNG, as stored) and result documents.

Keys come from the outbox payload (the traceability layout ``raw/plant=/line=/station=/
date=/<id>.png`` and ``results/.../<id>.json``). Every object carries its sha256 as user
metadata (``x-amz-meta-sha256``) and is sent with ``ChecksumSHA256``, so the server
rejects a body damaged on the way and the checksum it stores can be compared later;
images also carry part, lot, station, recipe, calibration and model version.

Integrity end to end at no client cost: an image's sha256 is the one the station computed
when it captured it (the image store is content-addressed), so the sink does not hash the
file again; it sends that digest as ``ChecksumSHA256`` and the *server* verifies the body
against it. A file damaged on disk is therefore refused by the server (``BadDigest``);
only then does the sink hash the local file, to tell a damaged file (dead letter, never
published) from bytes damaged in transit (retried). botocore's default CRC32 would have to
be computed from the file as read now, so it could not catch a file damaged after capture.

PUTs are sent without ``Expect: 100-continue``: waiting for the server's interim answer
costs a round trip per object (on a 20 ms plant uplink, 20 ms per image), and all it buys
is not sending a body the server would refuse, which here is rare and harmless.

X-ray originals (outbox kind ``original``: the detector's TIFF / DICOM as kept by the
station, content-addressed ``originals/.../<sha256>.<ext>``) take the image path: the
station's sha256 as ``ChecksumSHA256``, the same metadata plus ``original-file`` and
``format``, multipart above the threshold, the bandwidth cap. A kept original deleted from
the data dir is a permanent error naming the file (dead letter; ``sync retry-dead`` after
putting it back), never a retry loop; the workflow start that ``requires`` it waits.

Idempotent: an attempt after the first (the previous one may have succeeded before the
process died) first asks ``HEAD``; an object with the same sha256 and size counts as
delivered and is not written again (no second version in a versioned bucket).
Files above ``multipart_threshold_mb`` go up in parts (explicit multipart upload, each
part with its own checksum, aborted on failure). Every byte passes the bandwidth cap.
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from cloudsync.limits import TokenBucket
from cloudsync.registry import SinkContext, register_sink
from cloudsync.sinks.aws_common import delivery_error, error_code, make_client
from cloudsync.sinks.base import Delivered, DeliveryError, OutboxItem, Sink

MB = 1 << 20
# Metadata keys are sent as x-amz-meta-<key>; S3 lower-cases them, so use lower-case here.
IMAGE_METADATA_KEYS = {
    "part_id": "part", "lot": "lot", "station": "station", "recipe": "recipe",
    "calibration_version": "calibration-version", "model_id": "model-id", "model_version": "model-version",
}
# Payload fields of an ``original`` row that travel as metadata too (the detector's file name).
ORIGINAL_METADATA_KEYS = {"file": "original-file", "format": "format"}
FILE_KINDS = {"image": "image/png", "original": "application/octet-stream"}  # kind -> default Content-Type


class ChecksumMismatch(DeliveryError):
    """The server refused the body: it does not match the checksum sent with it."""


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _ascii(value: Any) -> str:
    # User metadata travels in HTTP headers: ASCII only, no control characters.
    return "".join(c if 32 <= ord(c) < 127 else "_" for c in str(value))[:256]


def result_body(document: dict[str, Any]) -> bytes:
    """One JSON line (JSON Lines / Athena friendly); sorted keys make the bytes repeatable."""
    return (json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                       allow_nan=False) + "\n").encode("utf-8")


class S3Sink(Sink):
    name = "s3"

    def __init__(self, data_dir: Path, *, bucket: str, client: Any, sse: str = "AES256",
                 kms_key_id: str | None = None, multipart_threshold: int = 8 * MB,
                 multipart_chunk: int = 8 * MB, workers: int = 4, limiter: TokenBucket | None = None,
                 stop: threading.Event | None = None) -> None:
        super().__init__(data_dir)
        self.bucket, self.client = bucket, client
        self.sse, self.kms_key_id = sse, kms_key_id
        self.multipart_threshold = int(multipart_threshold)
        self.multipart_chunk = int(max(5 * MB, multipart_chunk))
        self.workers = workers
        self.limiter = limiter
        self.stop = stop

    # --- the interface ----------------------------------------------------------------
    def deliver(self, item: OutboxItem) -> Delivered:
        p = item.payload
        key = p.get("key")
        if not key:
            raise DeliveryError(f"{item.idempotency_key}: payload has no S3 key", retryable=False)
        if item.kind in ("result", "label"):  # one JSON line: a result, or a review correction
            body = result_body(p["document"])
            sha = hashlib.sha256(body).hexdigest()
            meta = {"sha256": sha, "inspection-id": _ascii(item.inspection_id or "")}
            return self._put(item, key, body, sha, p.get("content_type", "application/json"), meta)
        if item.kind in FILE_KINDS:
            return self._deliver_file(item, key, p)
        raise DeliveryError(f"{item.idempotency_key}: the s3 sink does not deliver {item.kind!r}", retryable=False)

    def probe(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            raise delivery_error(exc, f"bucket {self.bucket}") from exc

    # --- files: images and X-ray originals --------------------------------------------
    def _deliver_file(self, item: OutboxItem, key: str, p: dict[str, Any]) -> Delivered:
        what = "image" if item.kind == "image" else "original file"
        path = self.data_dir / p["local_path"]
        expected = p.get("sha256")
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            hint = "; put it back, then 'linestation sync retry-dead'" if item.kind == "original" else ""
            raise DeliveryError(f"{item.idempotency_key}: {what} {p['local_path']} is missing from "
                                f"{self.data_dir}{hint}", retryable=False) from None
        meta = {"sha256": expected or "", "inspection-id": _ascii(item.inspection_id or "")}
        for col, name in IMAGE_METADATA_KEYS.items():
            value = (p.get("metadata") or {}).get(col)
            if value not in (None, ""):
                meta[name] = _ascii(value)
        if item.kind == "original":
            meta.update({name: _ascii(p[col]) for col, name in ORIGINAL_METADATA_KEYS.items() if p.get(col)})
        ctype = p.get("content_type") or FILE_KINDS[item.kind]
        if size > self.multipart_threshold:
            return self._multipart(item, key, path, size, expected, ctype, meta, what)
        body = path.read_bytes()
        if not expected:  # a row without the station's digest (none written so: defensive)
            expected = meta["sha256"] = hashlib.sha256(body).hexdigest()
        try:
            return self._put(item, key, body, expected, ctype, meta)
        except ChecksumMismatch as exc:
            if hashlib.sha256(body).hexdigest() != expected:
                # Never publish bytes that are not what the record says it captured.
                raise DeliveryError(f"{item.idempotency_key}: local {what} {p['local_path']} does not match its "
                                    f"sha256 (file damaged on disk)", retryable=False) from exc
            raise

    # --- writing ----------------------------------------------------------------------
    def _sse_args(self) -> dict[str, str]:
        if self.sse == "AES256":
            return {"ServerSideEncryption": "AES256"}
        if self.sse == "aws:kms":
            out = {"ServerSideEncryption": "aws:kms"}
            if self.kms_key_id:
                out["SSEKMSKeyId"] = self.kms_key_id
            return out
        return {}

    def _existing(self, key: str, sha: str, size: int) -> dict[str, Any] | None:
        """The HEAD of ``key`` if an identical object (same sha256 metadata and size) is there."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise delivery_error(exc, f"HEAD s3://{self.bucket}/{key}") from exc
        if head.get("Metadata", {}).get("sha256") == sha and head.get("ContentLength") == size:
            return head
        return None

    def _detail(self, key: str, resp: dict[str, Any], sha: str, size: int) -> dict[str, Any]:
        d = {"bucket": self.bucket, "key": key, "etag": resp.get("ETag"), "sha256": sha, "bytes": size}
        for src, dst in (("VersionId", "version_id"), ("ServerSideEncryption", "sse"),
                         ("ChecksumSHA256", "checksum_sha256")):
            if resp.get(src):
                d[dst] = resp[src]
        if self.sse != "none" and not resp.get("ServerSideEncryption"):
            d["sse_confirmed"] = False  # the server ignored the setting; recorded, not fatal
        return d

    def _throttle(self, nbytes: int) -> None:
        if self.limiter is not None and not self.limiter.take(nbytes, self.stop):
            raise DeliveryError("stopping", retryable=True)

    def _put(self, item: OutboxItem, key: str, body: bytes, sha: str, ctype: str,
             meta: dict[str, str]) -> Delivered:
        if item.attempts > 1:
            head = self._existing(key, sha, len(body))
            if head is not None:
                return Delivered(self._detail(key, head, sha, len(body)), duplicate=True)
        checksum = _b64(bytes.fromhex(sha))
        self._throttle(len(body))
        try:
            resp = self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=ctype,
                                          Metadata=meta, ChecksumSHA256=checksum, **self._sse_args())
        except Exception as exc:
            if error_code(exc) == "BadDigest":  # damaged in transit: sending again can succeed
                raise ChecksumMismatch(f"PUT s3://{self.bucket}/{key}: checksum mismatch in transit",
                                       retryable=True) from exc
            raise delivery_error(exc, f"PUT s3://{self.bucket}/{key}") from exc
        if resp.get("ChecksumSHA256") not in (None, checksum):
            raise DeliveryError(f"PUT s3://{self.bucket}/{key}: server stored a different checksum",
                                retryable=True)
        return Delivered(self._detail(key, resp, sha, len(body)))

    def _multipart(self, item: OutboxItem, key: str, path: Path, size: int, expected: str | None,
                   ctype: str, meta: dict[str, str], what: str = "image") -> Delivered:
        if item.attempts > 1 and expected:
            head = self._existing(key, expected, size)
            if head is not None:
                return Delivered(self._detail(key, head, expected, size), duplicate=True)
        where = f"multipart s3://{self.bucket}/{key}"
        try:
            upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, ContentType=ctype,
                                                         Metadata=meta, ChecksumAlgorithm="SHA256",
                                                         **self._sse_args())
        except Exception as exc:
            raise delivery_error(exc, where) from exc
        uid = upload["UploadId"]
        whole = hashlib.sha256()
        parts = []
        try:
            with open(path, "rb") as f:
                for number in range(1, 10001):
                    chunk = f.read(self.multipart_chunk)
                    if not chunk:
                        break
                    whole.update(chunk)
                    self._throttle(len(chunk))
                    checksum = _b64(hashlib.sha256(chunk).digest())
                    r = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=uid, PartNumber=number,
                                                Body=chunk, ChecksumSHA256=checksum)
                    parts.append({"PartNumber": number, "ETag": r["ETag"], "ChecksumSHA256": checksum})
            sha = whole.hexdigest()
            if expected and sha != expected:
                raise DeliveryError(f"{item.idempotency_key}: local {what} does not match its sha256 "
                                    f"(file damaged on disk)", retryable=False)
            resp = self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=uid,
                                                         MultipartUpload={"Parts": parts})
        except BaseException as exc:
            try:  # no orphaned parts left billing in the bucket
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=uid)
            except Exception:
                pass
            if isinstance(exc, DeliveryError) or not isinstance(exc, Exception):
                raise
            raise delivery_error(exc, where) from exc
        detail = self._detail(key, resp, sha, size)
        detail["parts"] = len(parts)
        return Delivered(detail)

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close:
            close()


def _drop_expect_continue(request: Any, **_kw: Any) -> None:
    if "Expect" in request.headers:
        del request.headers["Expect"]


def without_expect_continue(client: Any) -> Any:
    """``client`` sends object bodies at once (see the module docstring); returns it."""
    for op in ("PutObject", "UploadPart"):
        client.meta.events.register_first(f"before-sign.s3.{op}", _drop_expect_continue)
    return client


@register_sink("s3")
def build(cfg: Any, data_dir: Path, ctx: SinkContext) -> S3Sink | None:
    s = cfg.sync.s3
    if not s.enabled:
        return None
    client = without_expect_continue(make_client("s3", s, s.workers))
    return S3Sink(data_dir, bucket=s.bucket, client=client, sse=s.sse,
                  kms_key_id=s.kms_key_id, multipart_threshold=int(s.multipart_threshold_mb * MB),
                  multipart_chunk=int(s.multipart_chunk_mb * MB), workers=s.workers, limiter=ctx.limiter)
