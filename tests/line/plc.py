"""The line's side of the handshake, for the tests and bench/handshake.py: a PLC over a real
pymodbus client (:class:`SimPlc`) and an MES over a real asyncua client (:class:`MesClient`).

It does what a PLC program does: write the part's registers, raise the trigger, poll
``result_ready`` every ``poll_s`` (a PLC scans its Modbus master every few ms), read the
result, acknowledge, drop trigger and acknowledge, and wait for ``trigger_ready``.
Addresses come from the station's register map, as a PLC programmer would take them from
docs/line-handshake.md.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from pymodbus.client import ModbusTcpClient

from station.line.loop_thread import LoopThread
from station.line.registers import BY_NAME, Table, pack_string, table_size, unpack_string

UNIT = 1


@dataclass(frozen=True)
class PlcResult:
    code: int
    part_id: str
    result_seq: int
    confidence: float
    latency_ms: float  # trigger written -> result_ready seen


class SimPlc:
    def __init__(self, port: int, *, poll_s: float = 0.005, unit: int = UNIT) -> None:
        self.client = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        if not self.client.connect():
            raise ConnectionError(f"no Modbus server on 127.0.0.1:{port}")
        self.poll_s = poll_s
        self.unit = unit

    def close(self) -> None:
        self.client.close()

    # --- raw access -------------------------------------------------------------------------
    def _ok(self, rr):
        if rr.isError():
            raise IOError(f"Modbus error: {rr}")
        return rr

    def bit(self, name: str) -> bool:
        reg = BY_NAME[name]
        assert reg.table is Table.DISCRETE_INPUT
        return bool(self._ok(self.client.read_discrete_inputs(reg.address, count=1, device_id=self.unit)).bits[0])

    def inputs(self) -> dict[str, int | str]:
        regs = self._ok(self.client.read_input_registers(0, count=table_size(Table.INPUT), device_id=self.unit)).registers
        out: dict[str, int | str] = {}
        for r in BY_NAME.values():
            if r.table is Table.INPUT:
                out[r.name] = unpack_string(regs[r.address:r.end]) if r.kind == "string" else regs[r.address]
        return out

    def coil(self, name: str, value: bool) -> None:
        self._ok(self.client.write_coil(BY_NAME[name].address, value, device_id=self.unit))

    def write_part(self, part_id: str = "", lot: str = "", recipe: int = 0) -> None:
        words = (pack_string(part_id, BY_NAME["part_id"].size) + pack_string(lot, BY_NAME["lot"].size) + [recipe])
        self._ok(self.client.write_registers(BY_NAME["part_id"].address, words, device_id=self.unit))

    def write_raw(self, name: str, words: list[int]) -> None:
        self._ok(self.client.write_registers(BY_NAME[name].address, words, device_id=self.unit))

    def wait_bit(self, name: str, value: bool, timeout_s: float = 10.0) -> float:
        """Poll until the bit has ``value``; return the seconds it took."""
        t0 = time.perf_counter()
        while self.bit(name) != value:
            if time.perf_counter() - t0 > timeout_s:
                raise TimeoutError(f"{name} did not become {value} within {timeout_s} s")
            time.sleep(self.poll_s)
        return time.perf_counter() - t0

    # --- one full handshake -----------------------------------------------------------------
    def inspect(self, part_id: str = "", lot: str = "", recipe: int = 0, timeout_s: float = 10.0) -> PlcResult:
        self.wait_bit("trigger_ready", True, timeout_s)
        self.write_part(part_id, lot, recipe)
        t0 = time.perf_counter()
        self.coil("trigger", True)
        self.wait_bit("result_ready", True, timeout_s)
        latency = (time.perf_counter() - t0) * 1000.0
        ir = self.inputs()
        # acknowledge and drop the trigger in one write (coils 0 and 1 are adjacent)
        self._ok(self.client.write_coils(BY_NAME["trigger"].address, [False, True], device_id=self.unit))
        self.wait_bit("result_ready", False, timeout_s)
        self.coil("acknowledge", False)
        return PlcResult(int(ir["result_code"]), str(ir["result_part_id"]), int(ir["result_seq"]),
                         int(ir["confidence"]) / 1000.0, latency)

    def select_recipe(self, number: int, timeout_s: float = 10.0) -> int:
        """Write the recipe number, pulse select_recipe; return recipe_status when answered."""
        seq = int(self.inputs()["recipe_seq"])
        self._ok(self.client.write_register(BY_NAME["recipe_number"].address, number, device_id=self.unit))
        self.coil("select_recipe", True)
        t0 = time.perf_counter()
        while int((ir := self.inputs())["recipe_seq"]) == seq:
            if time.perf_counter() - t0 > timeout_s:
                raise TimeoutError("select_recipe was not answered")
            time.sleep(self.poll_s)
        self.coil("select_recipe", False)
        return int(ir["recipe_status"])


class MesClient:
    """A synchronous face over an asyncua client whose loop runs all the time in its own
    thread (so asyncua's keep-alive never stalls and the server keeps the session)."""

    def __init__(self, port: int, namespace: str, *, cert: tuple[Path, Path] | None = None,
                 mode: str = "SignAndEncrypt", user: str | None = None, password: str | None = None,
                 application_uri: str = "urn:test:mes") -> None:
        """``cert``: (certificate .der, key .pem) files for a Basic256Sha256 channel in ``mode``."""
        self._loop = LoopThread("mes-client")
        self._loop.start()
        self.client = Client(f"opc.tcp://127.0.0.1:{port}/linestation", timeout=10)
        self.client.application_uri = application_uri
        if user is not None:
            self.client.set_user(user)
            self.client.set_password(password or "")
        try:
            if cert is not None:
                self.run(self.client.set_security(SecurityPolicyBasic256Sha256, str(cert[0]), str(cert[1]),
                                                  mode=getattr(ua.MessageSecurityMode, mode)))
            self.run(self.client.connect())
        except BaseException:
            self._loop.stop()
            raise
        self.idx = self.run(self.client.get_namespace_index(namespace))
        self.obj = self.run(self.client.nodes.objects.get_child([f"{self.idx}:LineStation"]))
        self._methods: dict[str, object] = {}

    def run(self, coro):
        return self._loop.run(coro, 30)

    def node(self, *path: str):
        return self.run(self.obj.get_child([f"{self.idx}:{p}" for p in path]))

    def read(self, *path: str):
        return self.run(self.node(*path).read_value())

    def write(self, value, vtype, *path: str) -> None:
        self.run(self.node(*path).write_value(ua.DataValue(ua.Variant(value, vtype))))

    def call(self, method: str, *args):
        """Call a method of the station object (its node looked up once, not per call)."""
        if method not in self._methods:
            self._methods[method] = self.node(method)
        return self.run(self.obj.call_method(self._methods[method], *args))

    def wait_for(self, predicate, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            assert time.monotonic() < deadline, "condition not reached"
            time.sleep(0.02)

    def close(self) -> None:
        try:
            self.run(self.client.disconnect())
        finally:
            self._loop.stop()
