"""The one module that imports boto3/botocore: AWS clients and error classification.

Everything else (cloudsync sinks, the SageMaker detector backend, batch) asks this module
for a client and uses the client's methods; nothing else imports the SDK. Endpoints can
be overridden (a local S3-compatible server, moto server) and every client has bounded
timeouts and retries, because a station must never hang on a dead network.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

# Error codes after which retrying the same request cannot succeed.
PERMANENT_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "UnrecognizedClientException", "InvalidClientTokenId", "AuthorizationError",
    "NoSuchBucket", "InvalidBucketName", "ValidationException", "ValidationError",
    "InvalidParameter", "InvalidParameterValue", "InvalidParameterException", "NotFound",
    "NotFoundException", "StateMachineDoesNotExist", "InvalidArn", "InvalidName",
    "InvalidDefinition", "MalformedPolicy", "EntityTooLarge", "InvalidRequest",
    "ModelError",  # sagemaker-runtime: the model container rejected the input
})
# Throttling and server-side trouble: retry with backoff.
RETRYABLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "SlowDown", "ServiceUnavailable", "InternalError",
    "InternalFailure", "InternalServerError", "RequestTimeout", "RequestTimeoutException",
    "ProvisionedThroughputExceededException", "ServiceUnavailableException",
})


@dataclass(frozen=True)
class AwsEndpoint:
    """Where and how to reach one AWS service (or a local stand-in for it)."""

    region: str = "us-east-1"
    endpoint_url: str | None = None  # e.g. http://127.0.0.1:8333 for a local S3 server
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 10.0
    max_attempts: int = 2  # SDK-level retries; the sync engine has its own backoff on top
    access_key_env: str | None = None  # names of environment variables, never the secrets
    secret_key_env: str | None = None


def client(service: str, endpoint: AwsEndpoint | None = None, **config: Any):
    """A boto3 client for ``service`` with bounded timeouts and retries.

    Credentials come from the named environment variables when given, else from the
    usual AWS chain (environment, profile, instance role).
    """
    ep = endpoint or AwsEndpoint()
    cfg = Config(
        region_name=ep.region,
        connect_timeout=ep.connect_timeout_s,
        read_timeout=ep.read_timeout_s,
        retries={"max_attempts": ep.max_attempts, "mode": "standard"},
        **config,
    )
    creds = {}
    if ep.access_key_env and ep.secret_key_env:
        creds = {"aws_access_key_id": os.environ.get(ep.access_key_env),
                 "aws_secret_access_key": os.environ.get(ep.secret_key_env)}
    session = boto3.session.Session()  # a session per client: boto3's default one is not thread-safe
    return session.client(service, endpoint_url=ep.endpoint_url, config=cfg, **creds)


def error_code(exc: BaseException) -> str | None:
    if isinstance(exc, botocore.exceptions.ClientError):
        return exc.response.get("Error", {}).get("Code")
    return None


def http_status(exc: BaseException) -> int | None:
    if isinstance(exc, botocore.exceptions.ClientError):
        return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


def is_retryable(exc: BaseException) -> bool:
    """True when the same call may succeed later (network down, throttled, 5xx)."""
    if isinstance(exc, (botocore.exceptions.EndpointConnectionError,
                        botocore.exceptions.ConnectTimeoutError,
                        botocore.exceptions.ReadTimeoutError,
                        botocore.exceptions.ConnectionClosedError,
                        botocore.exceptions.ProxyConnectionError)):
        return True
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return False
    code = error_code(exc)
    if code in RETRYABLE_CODES:
        return True
    if code in PERMANENT_CODES:
        return False
    status = http_status(exc)
    if status is not None:
        return status >= 500 or status in (408, 429)
    return isinstance(exc, (botocore.exceptions.BotoCoreError, OSError))


def describe_error(exc: BaseException) -> str:
    """A one-line description for logs, status pages and dead letters."""
    code = error_code(exc)
    if code:
        msg = exc.response.get("Error", {}).get("Message", "")  # type: ignore[attr-defined]
        return f"{code}: {msg}".strip()
    return f"{type(exc).__name__}: {exc}"
