"""MES write-back over HTTP: one JSON POST per result, made idempotent by the MES.

The request carries ``Idempotency-Key: <message_id>`` so the MES can refuse a repeat
(after a crash between "sent" and "marked done") with 409, which counts as delivered.
The standard library's ``http.client`` is enough here: one short request, bounded by
``timeout_s``, no redirects followed (a POST must not silently turn into a GET).
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

from cloudsync.sinks.base import Delivered, DeliveryError
from cloudsync.sinks.mes_result import MesTransport, opc_result
from station.config import MesRestConfig

RETRYABLE_STATUS = frozenset({408, 425, 429})  # plus every 5xx
MAX_BODY = 64 * 1024  # an MES answer is small; never buffer an unbounded reply


class RestTransport(MesTransport):
    """POSTs the result JSON to ``config.url``; the MES's JSON answer is the disposition."""

    name = "rest"

    def __init__(self, config: MesRestConfig) -> None:
        self.config = config
        parts = urlsplit(config.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"mes.rest.url {config.url!r} is not an http(s) URL")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def _headers(self, key: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json", "Idempotency-Key": key}
        env = self.config.auth_secret_env
        if env:
            secret = os.environ.get(env)
            if not secret:
                # A configuration fault: retrying cannot help until someone sets the variable.
                raise DeliveryError(f"MES auth secret: environment variable {env} is not set", retryable=False)
            headers[self.config.auth_header] = secret
        return headers

    def _connection(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.config.timeout_s,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self._host, self._port, timeout=self.config.timeout_s)

    def _request(self, method: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, dict, bytes]:
        conn = self._connection()
        try:
            conn.request(method, self._path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read(MAX_BODY)
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(f"MES TLS certificate rejected: {exc}", retryable=False) from exc
        except (OSError, http.client.HTTPException) as exc:
            # Refused, reset, timed out, DNS, half-read reply: the network or the MES is down.
            what = "timed out" if isinstance(exc, socket.timeout) else f"{type(exc).__name__}: {exc}"
            raise DeliveryError(f"MES {self.config.url} unreachable: {what}", retryable=True) from exc
        finally:
            conn.close()

    def send(self, payload: dict[str, Any]) -> Delivered:
        result = opc_result(payload)  # validates the payload before anything goes out
        key = result["ResultId"]
        body = json.dumps({**payload, "result": {**result, "Timestamp": result["Timestamp"].isoformat()}},
                          separators=(",", ":"), default=str).encode()
        status, headers, raw = self._request("POST", body, self._headers(key))
        answer = _json_or_text(raw)
        if 200 <= status < 300:
            return Delivered(detail={"transport": self.name, "status": status, "disposition": _disposition(answer)})
        if status == 409:
            return Delivered(detail={"transport": self.name, "status": status, "disposition": _disposition(answer)},
                             duplicate=True)
        message = f"MES answered HTTP {status}: {_message(answer)}"
        if status >= 500 or status in RETRYABLE_STATUS:
            raise DeliveryError(message, retryable=True, retry_after_s=_retry_after(headers))
        raise DeliveryError(message, retryable=False)

    def probe(self) -> None:
        # Any HTTP answer proves the MES is reachable; only the network failing counts.
        self._request("HEAD", None, {})


def _json_or_text(raw: bytes) -> Any:
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        return text


def _disposition(answer: Any) -> Any:
    if isinstance(answer, dict) and "disposition" in answer:
        return answer["disposition"]
    return answer


def _message(answer: Any) -> str:
    if isinstance(answer, dict):
        for k in ("message", "error", "detail", "title"):
            if answer.get(k):
                return str(answer[k])[:500]
        return json.dumps(answer)[:500]
    return (str(answer) if answer else "(empty body)")[:500]


def _retry_after(headers: dict[str, str]) -> float | None:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; the engine's own backoff applies
