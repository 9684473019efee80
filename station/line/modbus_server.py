"""The station's Modbus TCP server for the PLC: the one module that imports pymodbus.

The register map is :data:`station.line.registers.REGISTER_MAP` (documented in
``docs/line-handshake.md``). pymodbus keeps the four tables; a device *action* (called
on every request, before pymodbus reads or writes its table) connects them to the
handshake: writes to coils and holding registers become handshake commands, and reads of
discrete inputs and input registers are filled from the handshake's status at that
moment, so the PLC never reads a value older than its own request.

pymodbus is asyncio-only; the server owns one event loop in a daemon thread. Commands
that write the audit log (recipe select, interlock) run in a worker thread so a slow
disk never stalls the PLC's polls.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from station.line.loop_thread import LoopThread
from station.line.handshake import LineBusy, LineHandshake, LineStatus, PartRequest
from station.line.registers import BY_NAME, PartDataError, Table, pack_string, table_size, unpack_string

log = logging.getLogger(__name__)

FC_READ = {1: Table.COIL, 2: Table.DISCRETE_INPUT, 3: Table.HOLDING, 4: Table.INPUT}
FC_WRITE = {5: Table.COIL, 15: Table.COIL, 6: Table.HOLDING, 16: Table.HOLDING, 22: Table.HOLDING,
            23: Table.HOLDING}
BITS = 16  # one register of bits per bit table


def _bits_to_word(bits: list[bool]) -> int:
    return sum(1 << i for i, b in enumerate(bits) if b)


def input_registers(status: LineStatus, heartbeat: int) -> list[int]:
    """The input-register table for one status snapshot (addresses from the map)."""
    regs = [0] * table_size(Table.INPUT)
    last = status.last_result
    recipe = status.last_recipe

    def put(name: str, value: int) -> None:
        regs[BY_NAME[name].address] = int(value) & 0xFFFF

    put("result_code", int(last.code) if last else 0)
    put("result_seq", status.result_seq)
    put("heartbeat", heartbeat)
    put("active_recipe", status.active_recipe_number)
    put("recipe_status", int(recipe.code) if recipe else 0)
    put("recipe_seq", status.recipe_seq)
    put("confidence", round(1000 * last.confidence) if last and last.confidence is not None else 0)
    put("state", status.state_code)
    put("protocol_errors", status.protocol_errors)
    reg = BY_NAME["result_part_id"]
    part = (last.part_id if last else "")[: reg.size * 2]
    regs[reg.address:reg.end] = pack_string(part, reg.size)
    return regs


def discrete_inputs(status: LineStatus) -> list[bool]:
    bits = [False] * BITS
    for name, value in (("trigger_ready", status.trigger_ready), ("result_ready", status.result_ready),
                        ("busy", status.busy), ("suspended", bool(status.suspensions)),
                        ("interlock_active", status.interlock)):
        bits[BY_NAME[name].address] = value
    return bits


class ModbusLineServer:
    """Serves the register map on ``host:port`` as unit ``unit_id`` until ``close()``."""

    def __init__(self, handshake: LineHandshake, *, host: str, port: int, unit_id: int) -> None:
        self.handshake = handshake
        self.host, self.port, self.unit_id = host, port, unit_id
        self._coils = [False] * BITS
        self._holding = [0] * table_size(Table.HOLDING)
        self._clients = 0
        self._loop_thread = LoopThread("line-modbus")
        self._server: ModbusTcpServer | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout_s: float = 10.0) -> ModbusLineServer:
        self._loop_thread.start()
        try:
            self._loop_thread.run(self._start(), timeout_s)
        except BaseException:
            self._loop_thread.stop()
            raise
        self._report_link()
        log.info("Modbus TCP line server on %s:%d (unit %d)", self.host, self.port, self.unit_id)
        return self

    async def _start(self) -> None:
        # pymodbus 3.16 serves every datastore through SimDevice (ModbusServerContext is
        # deprecated and converted to SimDevices inside the server), so the device action is
        # the supported hook. Four separate tables (the tuple form) give coils and discrete
        # inputs bit addresses, as PLC programmers expect.
        device = SimDevice(
            self.unit_id,
            simdata=([SimData(0, values=[False] * BITS, datatype=DataType.BITS)],
                     [SimData(0, values=[False] * BITS, datatype=DataType.BITS)],
                     [SimData(0, values=[0] * table_size(Table.HOLDING), datatype=DataType.REGISTERS)],
                     [SimData(0, values=[0] * table_size(Table.INPUT), datatype=DataType.REGISTERS)]),
            action=self._action)
        self._server = ModbusTcpServer(device, address=(self.host, self.port), trace_connect=self._on_connect)
        try:
            await self._server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus: "Could not start listen"
            raise OSError(f"Modbus server cannot listen on {self.host}:{self.port}: {exc}") from None

    def close(self) -> None:
        self._loop_thread.shutdown(self._server.shutdown if self._server is not None else None, 5,
                                   "Modbus server shutdown")

    def _on_connect(self, connected: bool) -> None:
        self._clients = max(0, self._clients + (1 if connected else -1))
        self._report_link()

    def _report_link(self) -> None:
        self.handshake.set_link("modbus", f"listening on {self.host}:{self.port}, {self._clients} client(s)")

    # --- the device action: every request passes here ---------------------------------------
    async def _action(self, func_code: int, start: int, address: int, count: int,
                      registers: list[int], values: Any) -> None:
        if values is not None and func_code in FC_WRITE:
            if FC_WRITE[func_code] is Table.COIL:
                await self._coils_written(address, list(values))
            else:
                self._holding[address:address + len(values)] = [int(v) & 0xFFFF for v in values]
            return None
        table = FC_READ.get(func_code)
        if table is Table.DISCRETE_INPUT:
            registers[0] = _bits_to_word(discrete_inputs(self.handshake.status()))
        elif table is Table.INPUT:
            regs = input_registers(self.handshake.status(), self.handshake.heartbeat)
            registers[:len(regs)] = regs
        return None

    async def _coils_written(self, address: int, bits: list[bool]) -> None:
        for offset, value in enumerate(bits):
            i = address + offset
            if i >= BITS:
                break
            old, self._coils[i] = self._coils[i], bool(value)
            if i == BY_NAME["interlock"].address and old != bool(value):
                await asyncio.to_thread(self.handshake.set_interlock, bool(value), "modbus")
            elif value and not old:
                await self._rising_edge(i)

    async def _rising_edge(self, coil: int) -> None:
        if coil == BY_NAME["trigger"].address:
            try:
                self.handshake.trigger(self._part_request(), source="plc:modbus")
            except LineBusy as exc:
                log.warning("Modbus %s", exc)
        elif coil == BY_NAME["acknowledge"].address:
            self.handshake.acknowledge("plc:modbus")
        elif coil == BY_NAME["select_recipe"].address:
            number = self._holding[BY_NAME["recipe_number"].address]
            await asyncio.to_thread(self.handshake.select_recipe, number, "plc:modbus")

    def _part_request(self) -> PartRequest:
        def text(name: str) -> str:
            reg = BY_NAME[name]
            return unpack_string(self._holding[reg.address:reg.end])

        try:
            return PartRequest(text("part_id"), text("lot"), self._holding[BY_NAME["recipe_number"].address])
        except PartDataError as exc:
            return PartRequest(problem=f"part id / lot registers: {exc}")
