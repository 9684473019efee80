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
  (Recipe is a name or a number; Client names the caller in the audit log as
  ``opcua:<Client>``) and ``Trigger(PartId, Lot) -> (ResultId, Verdict, ResultCode, Message)``,
  which waits for the result (at most ``line.result_timeout_ms``: an error code comes back
  instead of a hang) and acknowledges it, so a method call is one complete handshake.

asyncua is asyncio-only: the server owns one event loop in a daemon thread; handshake
changes are copied into the address space from that loop.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from datetime import datetime, timezone
from typing import Any

from asyncua import Server, ua
from asyncua.common.callback import CallbackType
from asyncua.common.methods import uamethod

from station.line.loop_thread import LoopThread
from station.line.handshake import LineBusy, LineHandshake, LineStatus, PartRequest
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

    def __init__(self, handshake: LineHandshake, *, endpoint: str, namespace: str) -> None:
        self.handshake = handshake
        self.endpoint = endpoint
        self.namespace = namespace
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
        self.handshake.set_link("opcua", f"listening on {self.endpoint}")
        log.info("OPC UA line server on %s", self.endpoint)
        return self

    async def _start(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("LineStation")
        # No certificates are provisioned on a station yet: NoSecurity, for a line network only.
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
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

    def close(self) -> None:
        try:
            self.handshake.remove_listener(self._on_status)
        except ValueError:
            pass
        if self._server is not None and self._loop_thread.alive:
            try:
                self._loop_thread.run(self._server.stop(), 10)
            except Exception:
                log.exception("OPC UA server stop failed")
        self._loop_thread.stop()

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
        for item, status in zip(event.request_params.NodesToWrite, event.response_params):
            if item.NodeId == interlock and status.is_good():
                active = bool(item.Value.Value.Value)
                accepted = await asyncio.to_thread(self.handshake.set_interlock, active, "opcua")
                if not accepted:  # show the real state again
                    self._written.pop((id(self._state), "Interlock"), None)
                    self._on_status(self.handshake.status())

    def _select_recipe(self, _parent: Any, recipe: str, client: str) -> tuple:
        who = f"opcua:{(client or 'anonymous').strip()[:64]}"
        answer = self.handshake.select_recipe(recipe or "", who)
        return (ua.Variant(int(answer.code), V.Int32), ua.Variant(answer.recipe, V.String),
                ua.Variant(answer.message, V.String))

    def _trigger(self, _parent: Any, part_id: str, lot: str) -> tuple:
        try:
            ticket = self.handshake.trigger(PartRequest(part_id or "", lot or ""), source="opcua")
        except LineBusy as exc:
            return self._answer("", "", ResultCode.NOT_READY, str(exc))
        result = self.handshake.wait(ticket)
        if result is None:  # cannot happen while the watchdog runs; never hang the caller
            return self._answer("", "", ResultCode.TIMEOUT, "no result")
        self.handshake.acknowledge("opcua")
        return self._answer(result.result_id, result.verdict, result.code, result.message)

    @staticmethod
    def _answer(result_id: str, verdict: str, code: ResultCode, message: str) -> tuple:
        return (ua.Variant(result_id, V.String), ua.Variant(verdict, V.String), ua.Variant(int(code), V.Int32),
                ua.Variant(message, V.String))
