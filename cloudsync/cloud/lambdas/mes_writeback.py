"""Lambda (state ``MesWriteBack``): report one result to the MES over REST.

The cloud-side twin of the station's MES sink, for plants whose MES is reachable from
AWS rather than from the line. Same contract: JSON POST, ``Idempotency-Key`` =
``<inspection_id>:mes:result`` (the station's key too, so an MES fed by both paths books
a result once), the auth header's value from Secrets Manager. Errors are typed for the
state machine's Retry/Catch: ``MesUnavailable`` (network, 5xx, 429: retried with
backoff), ``MesRejected`` (other 4xx: the workflow fails with the MES's message).
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

import boto3

_secret: str | None = None  # fetched once per Lambda container


class MesUnavailable(Exception):
    """Retryable: the MES could not be reached or asked us to come back later."""


class MesRejected(Exception):
    """Permanent: the MES refused this result."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a POST must not silently become a GET somewhere else


_opener = urllib.request.build_opener(_NoRedirect)


def _auth_secret() -> str | None:
    global _secret
    arn = os.environ.get("MES_SECRET_ARN")
    if not arn:
        return None
    if _secret is None:
        _secret = boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    return _secret


def _answer(raw: bytes) -> Any:
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        return text


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """POST the result; returns ``{"disposition", "status", "duplicate"}``."""
    rid = event.get("inspection_id")
    if not rid or not event.get("verdict"):
        raise MesRejected("execution input lacks inspection_id or verdict")
    url = os.environ.get("MES_URL", "")
    if not url:
        # Deployed without a cloud-side MES (the station writes back itself): nothing to do.
        return {"disposition": None, "status": None, "duplicate": False, "skipped": "MES_URL is not set"}
    key = f"{rid}:mes:result"
    body = json.dumps({**event, "message_id": key}, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    secret = _auth_secret()
    if secret:
        headers[os.environ.get("MES_AUTH_HEADER", "Authorization")] = secret
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    timeout = float(os.environ.get("MES_TIMEOUT_S", "5"))
    try:
        with _opener.open(request, timeout=timeout) as resp:
            status, answer = resp.status, _answer(resp.read(65536))
    except urllib.error.HTTPError as exc:
        status, answer = exc.code, _answer(exc.read(65536))
    except (OSError, urllib.error.URLError) as exc:
        raise MesUnavailable(f"MES unreachable: {exc}") from exc
    disposition = answer.get("disposition", answer) if isinstance(answer, dict) else answer
    if 200 <= status < 300 or status == 409:
        return {"disposition": disposition, "status": status, "duplicate": status == 409}
    message = answer.get("message", answer) if isinstance(answer, dict) else answer
    if status >= 500 or status in (408, 425, 429):
        raise MesUnavailable(f"MES answered HTTP {status}: {message}")
    raise MesRejected(f"MES answered HTTP {status}: {message}")
