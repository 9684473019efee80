"""MES write-back over OPC UA: the one module that imports asyncua.

The result is published the way OPC 40100 (machine vision) / OPC 40001-101 (machinery
result) describe one: ``ResultId``, ``PartId``, ``State`` (ResultState, 1 = completed),
``Verdict`` (OK / NotOK / NotDecidable) and ``Timestamp``. Primary path: call the MES
object's method (default ``ReportResult``) with those five input arguments; its first
output is the MES disposition (a JSON object in a String is decoded), an optional second
Boolean output says "already reported". Alternative: write the configured nodes, with
``ResultId`` written last so an MES watching it sees a complete result.

asyncua is asyncio-only; the sync engine is threaded. The transport owns one event loop
in a daemon thread, every call is bounded by ``timeout_s``, and any connection trouble
drops the client so the next delivery reconnects.
"""
from __future__ import annotations

import asyncio
import json
import os
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from asyncua import Client, ua
from asyncua.common.node import Node

from cloudsync.sinks.base import Delivered, DeliveryError
from cloudsync.sinks.mes_result import VERDICT_CODES, MesTransport, opc_result
from station.config import MesOpcUaConfig

# Status codes after which the same call cannot succeed: the MES or the config must change.
PERMANENT_STATUS = frozenset({
    "BadUserAccessDenied", "BadIdentityTokenInvalid", "BadIdentityTokenRejected",
    "BadNodeIdUnknown", "BadNodeIdInvalid", "BadMethodInvalid", "BadArgumentsMissing",
    "BadTooManyArguments", "BadTypeMismatch", "BadInvalidArgument", "BadNotWritable",
    "BadBrowseNameInvalid", "BadNoMatch", "BadOutOfRange", "BadSecurityModeRejected",
    "BadSecurityPolicyRejected", "BadCertificateUntrusted", "BadNotExecutable",
})
ARG_TYPES = {"ResultId": ua.VariantType.String, "PartId": ua.VariantType.String,
             "State": ua.VariantType.Int32, "Verdict": ua.VariantType.String,
             "Timestamp": ua.VariantType.DateTime}
WRITE_ORDER = ("PartId", "State", "Verdict", "Timestamp", "ResultId")
_INT_TYPES = {ua.VariantType.Int16, ua.VariantType.Int32, ua.VariantType.Int64, ua.VariantType.UInt16,
              ua.VariantType.UInt32, ua.VariantType.UInt64, ua.VariantType.Byte, ua.VariantType.SByte}


class OpcUaTransport(MesTransport):
    """Reports results to an OPC UA MES server (method call or node writes)."""

    name = "opcua"

    def __init__(self, config: MesOpcUaConfig) -> None:
        self.config = config
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mes-opcua", daemon=True)
        self._thread.start()
        self._lock = threading.Lock()  # one delivery at a time: a method call is one request anyway
        self._client: Client | None = None
        self._object: Node | None = None
        self._method: Node | None = None
        self._nodes: dict[str, tuple[Node, ua.VariantType]] = {}

    # --- the thread boundary ---------------------------------------------------------
    def _run(self, coro: Any, what: str) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout=self.config.timeout_s * 2 + 1)  # connect + call, each bounded
        except FutureTimeout:
            future.cancel()
            self._drop()
            raise DeliveryError(f"OPC UA {what} timed out after {self.config.timeout_s}s", retryable=True) from None
        except DeliveryError:
            raise
        except ua.UaStatusCodeError as exc:
            name = _status_name(exc)
            permanent = name in PERMANENT_STATUS
            if not permanent:
                self._drop()
            raise DeliveryError(f"OPC UA {what} failed: {name}: {exc}", retryable=not permanent) from exc
        except (OSError, asyncio.TimeoutError, ConnectionError, ua.UaError) as exc:
            self._drop()
            raise DeliveryError(f"OPC UA {self.config.endpoint} {what} failed: {type(exc).__name__}: {exc}",
                                retryable=True) from exc
        except Exception as exc:  # an asyncua internal surprise: start from a fresh session next time
            self._drop()
            raise DeliveryError(f"OPC UA {what} failed unexpectedly: {type(exc).__name__}: {exc}",
                                retryable=True) from exc

    def _drop(self) -> None:
        client, self._client = self._client, None
        self._object, self._method, self._nodes = None, None, {}
        if client is not None:
            fut = asyncio.run_coroutine_threadsafe(_quiet_disconnect(client), self._loop)
            try:
                fut.result(timeout=self.config.timeout_s + 1)
            except Exception:  # noqa: BLE001 - best effort: the connection is already broken
                fut.cancel()

    # --- asyncio side -----------------------------------------------------------------
    async def _connect(self) -> Client:
        if self._client is not None:
            return self._client
        cfg = self.config
        client = Client(url=cfg.endpoint, timeout=cfg.timeout_s)
        if cfg.username:
            client.set_user(cfg.username)
            if cfg.password_env:
                password = os.environ.get(cfg.password_env)
                if not password:
                    raise DeliveryError(f"OPC UA password: environment variable {cfg.password_env} is not set",
                                        retryable=False)
                client.set_password(password)
        await asyncio.wait_for(client.connect(), cfg.timeout_s)
        try:
            self._object = await self._resolve_object(client)
            if cfg.method:
                self._method = await self._child(client, self._object, cfg.method)
            for field, ref in cfg.nodes.items():
                node = await self._node_ref(client, ref)
                self._nodes[field] = (node, await node.read_data_type_as_variant_type())
        except BaseException:
            await _quiet_disconnect(client)
            raise
        self._client = client
        return client

    async def _resolve_object(self, client: Client) -> Node:
        if self.config.object_node_id:
            node = client.get_node(self.config.object_node_id)
            await node.read_browse_name()  # fails now (BadNodeIdUnknown) rather than on first call
            return node
        node = client.nodes.objects
        for name in self.config.object_path:
            node = await self._child(client, node, name)
        return node

    async def _node_ref(self, client: Client, ref: str) -> Node:
        if ref.startswith(("ns=", "i=", "s=", "g=", "b=")):
            node = client.get_node(ref)
            await node.read_browse_name()
            return node
        return await self._child(client, self._object, ref)

    async def _child(self, client: Client, parent: Node, name: str) -> Node:
        """``name`` as 'idx:Name', or 'Name' in ``namespace_uri``, or the unique child so named."""
        if ":" in name and name.split(":", 1)[0].isdigit():
            return await parent.get_child(name)
        if self.config.namespace_uri:
            idx = await client.get_namespace_index(self.config.namespace_uri)
            return await parent.get_child(f"{idx}:{name}")
        matches = [c for c in await parent.get_children() if (await c.read_browse_name()).Name == name]
        if len(matches) != 1:
            raise DeliveryError(f"OPC UA: {len(matches)} nodes named {name!r} under {parent.nodeid.to_string()}"
                                f" (set mes.opcua.namespace_uri or write 'idx:{name}')", retryable=False)
        return matches[0]

    async def _report(self, result: dict[str, Any]) -> Delivered:
        await self._connect()
        if self._method is not None:
            args = [ua.Variant(result[k], ARG_TYPES[k]) for k in ("ResultId", "PartId", "State", "Verdict",
                                                                   "Timestamp")]
            out = await asyncio.wait_for(self._object.call_method(self._method, *args), self.config.timeout_s)
            outs = out if isinstance(out, list) else [out]
            disposition = _decode(outs[0]) if outs else None
            duplicate = bool(_decode(outs[1])) if len(outs) > 1 else False
            return Delivered(detail={"transport": self.name, "disposition": disposition}, duplicate=duplicate)
        for field in WRITE_ORDER:
            if field in self._nodes:
                node, vtype = self._nodes[field]
                value = VERDICT_CODES[result[field]] if field == "Verdict" and vtype in _INT_TYPES else result[field]
                await asyncio.wait_for(node.write_value(ua.Variant(_coerce(value, vtype), vtype)),
                                       self.config.timeout_s)
        return Delivered(detail={"transport": self.name, "disposition": None,
                                 "written": sorted(self._nodes)})

    # --- the transport ------------------------------------------------------------------
    def send(self, payload: dict[str, Any]) -> Delivered:
        result = opc_result(payload)
        with self._lock:
            return self._run(self._report(result), "ReportResult" if self.config.method else "node write")

    def probe(self) -> None:
        with self._lock:
            self._run(self._connect(), "connect")

    def close(self) -> None:
        with self._lock:
            self._drop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()


async def _quiet_disconnect(client: Client) -> None:
    try:
        await asyncio.wait_for(client.disconnect(), 2)
    except Exception:  # noqa: BLE001 - closing a broken connection may fail in many ways
        pass


def _status_name(exc: ua.UaStatusCodeError) -> str:
    try:
        return ua.StatusCode(exc.code).name
    except Exception:  # noqa: BLE001
        return type(exc).__name__


def _decode(value: Any) -> Any:
    if isinstance(value, ua.Variant):
        value = value.Value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return value
        return parsed if isinstance(parsed, dict) else value
    return value


def _coerce(value: Any, vtype: ua.VariantType) -> Any:
    if vtype in _INT_TYPES:
        return int(value)
    if vtype == ua.VariantType.String:
        return value.isoformat() if hasattr(value, "isoformat") else str(value)
    return value
