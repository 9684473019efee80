"""What the AWS sinks share: a client from the sync config, and errors turned into DeliveryError.

Clients come only from :mod:`station.aws_client` (the one module that imports boto3).
"""
from __future__ import annotations

from typing import Any

from cloudsync.sinks.base import DeliveryError
from station.aws_client import AwsEndpoint, client, describe_error, error_code, is_retryable


def endpoint_of(cfg: Any) -> AwsEndpoint:
    """An :class:`AwsEndpoint` from an ``AwsAccessConfig`` section of the sync config."""
    return AwsEndpoint(
        region=cfg.region,
        endpoint_url=cfg.endpoint_url,
        connect_timeout_s=cfg.connect_timeout_s,
        read_timeout_s=cfg.read_timeout_s,
        access_key_env=cfg.access_key_id_env,
        secret_key_env=cfg.secret_access_key_env,
    )


def make_client(service: str, cfg: Any, workers: int, **config: Any):
    # One connection per worker thread, so parallel uploads never wait for a socket.
    return client(service, endpoint_of(cfg), max_pool_connections=max(10, workers + 2), **config)


def delivery_error(exc: BaseException, what: str) -> DeliveryError:
    """The typed form of an SDK error: retryable (network, 5xx, throttling) or permanent."""
    retry_after = None
    resp = getattr(exc, "response", None) or {}
    header = (resp.get("ResponseMetadata", {}).get("HTTPHeaders") or {}).get("retry-after")
    if header:
        try:
            retry_after = float(header)
        except ValueError:
            retry_after = None
    return DeliveryError(f"{what}: {describe_error(exc)}", retryable=is_retryable(exc), retry_after_s=retry_after)


__all__ = ["delivery_error", "endpoint_of", "error_code", "make_client"]
