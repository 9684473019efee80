"""The station's OPC UA server for the MES / line controller (asyncua adapter, server side).

Address space under ``Objects/LineStation`` (namespace ``line.opcua.namespace``), in the
spirit of OPC 40100 (machine vision) and OPC 40001-101 (machinery result):

- state: ``State`` (cycle state name), ``StateCode``, ``TriggerReady``, ``Busy``,
  ``ResultReady``, ``ActiveRecipe``, ``ActiveRecipeNumber``, ``SuspendReasons``;
  ``Interlock`` (Boolean, writable: true = door open / shutter closed, suspends the cycle).
- ``LastResult``: ``ResultId``, ``PartId``, ``Lot``, ``Recipe``, ``State`` (ResultState,
  1 = completed, 2 = error), ``Verdict`` (OK / NotOK / NotDecidable), ``ResultCode``,
  ``Decision``, ``Confidence``, ``Score``, ``Timestamp``, ``Message``, ``Sequence``.
- methods ``SelectRecipe(Recipe: String, Client: String) -> (Code, ActiveRecipe, Message)``
  (Recipe is a name or a number; Client is kept for compatibility: the audit names the
  session's proven identity, see :class:`~station.line.opcua_access.Identity`) and
  ``Trigger(PartId, Lot) -> (ResultId, Verdict, ResultCode, Message)``,
  which waits for the result (at most ``line.result_timeout_ms``: an error code comes back
  instead of a hang) and acknowledges it, so a method call is one complete handshake.

Security (``line.opcua.security``, default ``Basic256Sha256_SignAndEncrypt``): the server's
certificate lives in the data dir (:mod:`station.line.opcua_pki`), a client's application
certificate must be in the trusted folder, and who may write / call is decided by
:mod:`station.line.opcua_access` from what the session proved (certificate, station account).
asyncua gives a method no session, so the permission ruleset, which sees every request with
its session's user just before it runs on the same task, hands that identity to the method
handler through a context variable; a handler that finds none refuses (fails closed).

asyncua is asyncio-only: the server owns one event loop in a daemon thread; handshake
changes are copied into the address space from that loop.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from asyncua import Server, ua
from asyncua.common.callback import CallbackType
from asyncua.common.methods import uamethod
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import USER_TYPES, PermissionRuleset, User, UserRole

from station.line.handshake import LineBusy, LineHandshake, LineStatus, PartRequest
from station.line.loop_thread import LoopThread
from station.line.opcua_access import Identity, LineAccess
from station.line.opcua_pki import TrustList, load_or_create_server_certificate
from station.line.registers import ResultCode

log = logging.getLogger(__name__)
V = ua.VariantType
STATE_VARS = {"State": V.String, "StateCode": V.Int32, "TriggerReady": V.Boolean, "Busy": V.Boolean,
              "ResultReady": V.Boolean, "ActiveRecipe": V.String, "ActiveRecipeNumber": V.Int32,
              "SuspendReasons": V.String, "Interlock": V.Boolean}
RESULT_VARS = {"ResultId": V.String, "PartId": V.String, "Lot": V.String, "Recipe": V.String, "State": V.Int32,
               "Verdict": V.String, "ResultCode": V.Int32, "Decision": V.String, "Confidence": V.Double,
               "Score": V.Double, "Timestamp": V.DateTime, "Message": V.String, "Sequence": V.Int32}
_DEFAULTS = {V.String: "", V.Int32: 0, V.Boolean: False, V.Double: 0.0,
             V.DateTime: datetime(1970, 1, 1, tzinfo=timezone.utc)}


_UNSET = object()
POLICIES = {"none": [ua.SecurityPolicyType.NoSecurity],
            "Basic256Sha256_Sign": [ua.SecurityPolicyType.Basic256Sha256_Sign],
            "Basic256Sha256_SignAndEncrypt": [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]}
_CALLER: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("opcua_caller", default=None)
_WRITE = ua.NodeId(ua.ObjectIds.WriteRequest_Encoding_DefaultBinary)
_CALL = ua.NodeId(ua.ObjectIds.CallRequest_Encoding_DefaultBinary)
_SESSION_TYPES = frozenset(ua.NodeId(t) for t in USER_TYPES) - {_WRITE, _CALL}


@dataclass
class LineUser(User):
    """asyncua's session user, carrying what the session proved."""

    identity: Identity | None = None


class _LineUserManager:
    """asyncua asks it at ActivateSession; ``certificate`` is the secure channel's client certificate."""

    def __init__(self, access: LineAccess) -> None:
        self.access = access

    def get_user(self, _iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        identity = self.access.admit(certificate or None, username, password)
        if identity is None:
            return None  # asyncua answers BadUserAccessDenied
        return LineUser(role=UserRole.User, name=identity.actor, identity=identity)


class _LineRuleset(PermissionRuleset):
    """Every request of a session passes here first: reads for all admitted sessions, writes
    and calls only with a control permission, no address-space changes at all."""

    def __init__(self, access: LineAccess) -> None:
        self.access = access

    def check_validity(self, user: Any, action_type_id: ua.NodeId, _body: Any) -> bool:
        identity = getattr(user, "identity", None)
        _CALLER.set(identity)
        if identity is None:
            return False
        if action_type_id == _WRITE:
            return self._allowed(identity, "run", "write (Interlock)")
        if action_type_id == _CALL:
            return self._allowed(identity, None, "method call")
        return action_type_id in _SESSION_TYPES

    def _allowed(self, identity: Identity, permission: str | None, what: str) -> bool:
        ok = identity.may(permission) if permission else bool(identity.permissions)
        if not ok:
            self.access.refused_action(identity, permission or "run/trigger", what)
        return ok


def state_values(st: LineStatus) -> dict[str, Any]:
    return {"State": st.cycle_state, "StateCode": st.state_code, "TriggerReady": st.trigger_ready, "Busy": st.busy,
            "ResultReady": st.result_ready, "ActiveRecipe": st.active_recipe,
            "ActiveRecipeNumber": st.active_recipe_number, "SuspendReasons": "; ".join(st.suspensions.values()),
            "Interlock": st.interlock}


def result_values(st: LineStatus) -> dict[str, Any] | None:
    r = st.last_result
    if r is None:
        return None
    return {"ResultId": r.result_id, "PartId": r.part_id, "Lot": r.lot, "Recipe": r.recipe,
            "State": 2 if r.code.is_error else 1, "Verdict": r.verdict, "ResultCode": int(r.code),
            "Decision": r.decision, "Confidence": r.confidence or 0.0, "Score": r.score or 0.0,
            "Timestamp": datetime.fromtimestamp(r.timestamp, timezone.utc), "Message": r.message,
            "Sequence": r.seq}


def _arg(name: str, type_id: int) -> ua.Argument:
    a = ua.Argument()
    a.Name, a.DataType, a.ValueRank = name, ua.NodeId(type_id), -1
    return a


class OpcUaLineServer:
    """Serves the station's state, last result and methods at ``endpoint`` until ``close()``."""

    def __init__(self, handshake: LineHandshake, *, endpoint: str, namespace: str, security: str = "none",
                 anonymous: str = "control", pki_dir: Path | None = None) -> None:
        if security not in POLICIES:
            raise ValueError(f"unknown OPC UA security {security!r} (one of {', '.join(POLICIES)})")
        if security != "none" and pki_dir is None:
            raise ValueError("a secured OPC UA server needs pki_dir (its certificate and the trusted clients)")
        self.handshake = handshake
        self.endpoint = endpoint
        self.namespace = namespace
        self.security = security
        self.pki_dir = pki_dir
        trust = TrustList(pki_dir / "trusted", pki_dir / "rejected") if pki_dir is not None else None
        self.access = LineAccess(handshake.store, secured=security != "none", anonymous=anonymous, trust=trust)
        self._loop_thread = LoopThread("line-opcua")
        self._server: Server | None = None
        self._state: dict[str, Any] = {}
        self._result: dict[str, Any] = {}
        self._refresh_pending = False
        self._pending_lock = threading.Lock()
        self._written: dict[tuple[int, str], Any] = {}

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout_s: float = 30.0) -> OpcUaLineServer:
        self._loop_thread.start()
        try:
            self._loop_thread.run(self._start(), timeout_s)
        except BaseException:
            self._loop_thread.stop()
            raise
        self.handshake.add_listener(self._on_status)
        self.handshake.set_link("opcua", self.link_text)
        log.info("OPC UA line server on %s", self.link_text)
        return self

    async def _start(self) -> None:
        server = Server(user_manager=_LineUserManager(self.access))
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("LineStation")
        await self._secure(server)
        idx = await server.register_namespace(self.namespace)
        obj = await server.nodes.objects.add_object(idx, "LineStation")
        for name, vtype in STATE_VARS.items():
            self._state[name] = await obj.add_variable(idx, name, ua.Variant(_DEFAULTS[vtype], vtype))
        await self._state["Interlock"].set_writable()
        last = await obj.add_object(idx, "LastResult")
        for name, vtype in RESULT_VARS.items():
            self._result[name] = await last.add_variable(idx, name, ua.Variant(_DEFAULTS[vtype], vtype))
        ids = ua.ObjectIds
        await obj.add_method(idx, "SelectRecipe", uamethod(self._select_recipe),
                             [_arg("Recipe", ids.String), _arg("Client", ids.String)],
                             [_arg("Code", ids.Int32), _arg("ActiveRecipe", ids.String), _arg("Message", ids.String)])
        await obj.add_method(idx, "Trigger", uamethod(self._trigger),
                             [_arg("PartId", ids.String), _arg("Lot", ids.String)],
                             [_arg("ResultId", ids.String), _arg("Verdict", ids.String),
                              _arg("ResultCode", ids.Int32), _arg("Message", ids.String)])
        server.subscribe_server_callback(CallbackType.PostWrite, self._after_write)
        try:
            await server.start()
        except OSError as exc:
            raise OSError(f"OPC UA server cannot listen on {self.endpoint}: {exc}") from None
        self._server = server
        await self._refresh()

    async def _secure(self, server: Server) -> None:
        st = self.handshake.runtime.cfg.station
        uri = f"urn:linestation:{st.plant}:{st.line}:{st.station}"
        await server.set_application_uri(uri)
        tokens: list[type] = [] if self.access.anonymous == "refuse" else [ua.AnonymousIdentityToken]
        if self.security == "none":
            log.warning("OPC UA on %s without security (line.opcua.security: none): nothing is signed or encrypted, "
                        "no user names are accepted; keep it on an isolated line network", self.endpoint)
        else:
            host = urlparse(self.endpoint).hostname or ""
            hosts = [socket.gethostname(), "localhost"] + ([host] if host not in ("0.0.0.0", "::") else [])
            own = await asyncio.to_thread(load_or_create_server_certificate, self.pki_dir / "own", uri, hosts,
                                          f"LineStation {st.station}")
            self.access.trust.ensure_dirs()
            if own.created:
                self.handshake.store.audit("line.opcua_certificate_created", subject=own.thumbprint,
                                           actor="station:opcua", payload={"path": str(own.cert_path), "uri": uri})
            log.info("OPC UA server certificate %s, SHA-1 thumbprint %s; trusted clients in %s",
                     own.cert_path, own.thumbprint, self.access.trust.trusted)
            if not self.access.trust.trusted_thumbprints():
                log.warning("no trusted OPC UA client certificates in %s: every client is refused until its "
                            "certificate is copied there (refused ones are saved in %s)",
                            self.access.trust.trusted, self.access.trust.rejected)
            await server.load_certificate(str(own.cert_path))
            await server.load_private_key(str(own.key_path))
            server.set_certificate_validator(self._validate_certificate)
            tokens.append(ua.UserNameIdentityToken)  # passwords only over a signed / encrypted channel
        server.set_identity_tokens(tokens)
        server.set_security_policy(POLICIES[self.security], permission_ruleset=_LineRuleset(self.access))

    async def _validate_certificate(self, cert: Any, _app: ua.ApplicationDescription) -> None:
        reason = await asyncio.to_thread(self.access.certificate_refusal, cert)
        if reason is not None:
            expired = "expired" in reason or "not valid before" in reason
            raise ServiceError(ua.StatusCodes.BadCertificateTimeInvalid if expired
                               else ua.StatusCodes.BadCertificateUntrusted)

    @property
    def link_text(self) -> str:
        return f"listening on {self.endpoint} (security {self.security}, anonymous {self.access.anonymous})"

    def close(self) -> None:
        try:
            self.handshake.remove_listener(self._on_status)
        except ValueError:
            pass
        self._loop_thread.shutdown(self._server.stop if self._server is not None else None, 10, "OPC UA server stop")

    # --- handshake -> address space -----------------------------------------------------------
    def _on_status(self, _status: LineStatus) -> None:
        with self._pending_lock:  # coalesce: one refresh reads the newest status
            if self._refresh_pending:
                return
            self._refresh_pending = True
        self._loop_thread.submit(self._refresh())

    async def _refresh(self) -> None:
        with self._pending_lock:
            self._refresh_pending = False
        st = self.handshake.status()
        for name, value in state_values(st).items():
            await self._write(self._state, STATE_VARS, name, value)
        values = result_values(st)
        if values is not None:
            for name, value in values.items():  # ResultId and Sequence last: a watcher sees a whole result
                if name not in ("ResultId", "Sequence"):
                    await self._write(self._result, RESULT_VARS, name, value)
            for name in ("ResultId", "Sequence"):
                await self._write(self._result, RESULT_VARS, name, values[name])

    async def _write(self, nodes: dict[str, Any], types: dict[str, ua.VariantType], name: str, value: Any) -> None:
        """Write only what changed: the refresh runs on every cycle state change, beside the line."""
        key = (id(nodes), name)
        if self._written.get(key, _UNSET) == value:
            return
        await nodes[name].write_value(ua.Variant(value, types[name]))
        self._written[key] = value

    # --- address space -> handshake -----------------------------------------------------------
    async def _after_write(self, event: Any, _dispatcher: Any) -> None:
        if not event.is_external:
            return  # our own refresh
        interlock = self._state["Interlock"].nodeid
        identity = getattr(event.user, "identity", None)
        who = identity.actor if identity is not None else "opcua:unknown"
        for item, status in zip(event.request_params.NodesToWrite, event.response_params):
            if item.NodeId == interlock and status.is_good():
                active = bool(item.Value.Value.Value)
                accepted = await asyncio.to_thread(self.handshake.set_interlock, active, "opcua", who)
                if not accepted:  # show the real state again
                    self._written.pop((id(self._state), "Interlock"), None)
                    self._on_status(self.handshake.status())

    def _caller(self, permission: str, what: str) -> Identity | None:
        """The identity the ruleset saw for this request; None (refuse) without the permission."""
        identity = _CALLER.get()
        if identity is None:
            log.error("OPC UA %s without a known caller: refused", what)
            return None
        if not identity.may(permission):
            self.access.refused_action(identity, permission, what)
            return None
        return identity

    async def _select_recipe(self, _parent: Any, recipe: str, client: str) -> Any:
        identity = self._caller("run", "SelectRecipe")
        if identity is None:
            return ua.StatusCode(ua.StatusCodes.BadUserAccessDenied)
        answer = await asyncio.to_thread(self.handshake.select_recipe, recipe or "", identity.actor_declaring(client))
        return (ua.Variant(int(answer.code), V.Int32), ua.Variant(answer.recipe, V.String),
                ua.Variant(answer.message, V.String))

    async def _trigger(self, _parent: Any, part_id: str, lot: str) -> Any:
        identity = self._caller("trigger", "Trigger")
        if identity is None:
            return ua.StatusCode(ua.StatusCodes.BadUserAccessDenied)
        return await asyncio.to_thread(self._trigger_blocking, identity, part_id or "", lot or "")

    def _trigger_blocking(self, identity: Identity, part_id: str, lot: str) -> tuple:
        try:
            ticket = self.handshake.trigger(PartRequest(part_id, lot), source="opcua")
        except LineBusy as exc:
            return self._answer("", "", ResultCode.NOT_READY, str(exc))
        result = self.handshake.wait(ticket)
        if result is None:  # cannot happen while the watchdog runs; never hang the caller
            return self._answer("", "", ResultCode.TIMEOUT, "no result")
        self.handshake.acknowledge("opcua")
        self._audit_trigger(identity, result)
        return self._answer(result.result_id, result.verdict, result.code, result.message)

    def _audit_trigger(self, identity: Identity, result: Any) -> None:
        """Who triggered this part (the inspection's own entry is the station's)."""
        try:
            self.handshake.store.audit("line.trigger", subject=result.result_id or result.part_id,
                                       actor=identity.actor,
                                       payload={"part_id": result.part_id, "lot": result.lot,
                                                "code": int(result.code), **identity.payload()})
        except Exception:  # the answer stands; the audit failure is logged loudly
            log.exception("could not audit the OPC UA trigger of %s", result.part_id)

    @staticmethod
    def _answer(result_id: str, verdict: str, code: ResultCode, message: str) -> tuple:
        return (ua.Variant(result_id, V.String), ua.Variant(verdict, V.String), ua.Variant(int(code), V.Int32),
                ua.Variant(message, V.String))
