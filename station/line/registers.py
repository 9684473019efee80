"""The line handshake's one register map, its result and error codes, and string packing.

Everything a PLC programmer needs is defined here once: :data:`REGISTER_MAP` drives the
Modbus server (:mod:`station.line.modbus_server`) and generates the table in
``docs/line-handshake.md`` (a test checks that the page and this module agree).

Addresses are 0-based protocol addresses (what goes on the wire); PLC tools that count
from 1 (``00001`` / ``10001`` / ``30001`` / ``40001``) add one.

Strings (part id, lot) are ASCII, two characters per register, the first character in
the high byte (no byte swap), padded with NUL; trailing NULs and spaces are stripped.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass


class Table(str, enum.Enum):
    """The four Modbus tables. Coils and holding registers are written by the PLC."""

    COIL = "coil"
    DISCRETE_INPUT = "discrete input"
    HOLDING = "holding register"
    INPUT = "input register"

    @property
    def plc_writes(self) -> bool:
        return self in (Table.COIL, Table.HOLDING)

    @property
    def is_bit(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE_INPUT)


class ResultCode(enum.IntEnum):
    """What the result register holds: a verdict (1-3) or an error code (10 and up)."""

    NONE = 0  # no result yet
    OK = 1  # good part (OPC 40001-101 OK)
    NOT_OK = 2  # defective part (NotOK): reject / hold
    NOT_DECIDABLE = 3  # supervisor review, or the capture was outside its spec
    TIMEOUT = 10  # no result within line.result_timeout_ms (the late record is kept, not reported)
    SUSPENDED = 11  # the station is suspended (interlock, disk nearly full): nothing was captured
    UNKNOWN_RECIPE = 12  # recipe number / name not configured
    CAPTURE_FAULT = 13  # the camera delivered no usable frame (timeout, failed buffer, disconnected)
    NOT_READY = 14  # not armed, faulted, or busy (an inspection is running)
    BAD_PART_DATA = 15  # part id / lot registers hold non-printable characters
    RECIPE_MISMATCH = 16  # the part's recipe number is not the active recipe: select it first
    NOT_CALIBRATED = 17  # the recipe has no calibration profile for this camera
    STATION_ERROR = 18  # the record could not be written (store error): the station faulted
    WINDOW_MISMATCH = 19  # the recipe's grey window is not the one the running model was trained on

    @property
    def is_error(self) -> bool:
        return self >= 10

    @classmethod
    def for_verdict(cls, verdict: str) -> ResultCode:
        return {"OK": cls.OK, "NotOK": cls.NOT_OK}.get(verdict, cls.NOT_DECIDABLE)


RESULT_CODE_TEXT = {
    ResultCode.NONE: "no result yet",
    ResultCode.OK: "OK: good part",
    ResultCode.NOT_OK: "NotOK: defective part (reject / hold)",
    ResultCode.NOT_DECIDABLE: "NotDecidable: review, or capture outside its spec",
    ResultCode.TIMEOUT: "timeout: no result within line.result_timeout_ms (the late record is kept, not reported)",
    ResultCode.SUSPENDED: "station suspended (interlock, disk nearly full): nothing captured",
    ResultCode.UNKNOWN_RECIPE: "unknown recipe number / name",
    ResultCode.CAPTURE_FAULT: "capture fault: no usable frame (camera timeout, failed buffer, disconnected)",
    ResultCode.NOT_READY: "not ready: not armed, faulted, or an inspection is running",
    ResultCode.BAD_PART_DATA: "part id / lot registers hold non-printable characters",
    ResultCode.RECIPE_MISMATCH: "the part's recipe number is not the active recipe (select it first)",
    ResultCode.NOT_CALIBRATED: "the recipe has no calibration profile for this camera",
    ResultCode.STATION_ERROR: "the record could not be written: the station faulted",
    ResultCode.WINDOW_MISMATCH: "the recipe's grey window differs from the running model's (restart the station with that recipe)",
}

# Cycle state names as the PLC sees them (input register ``state``).
STATE_CODES = {"idle": 0, "armed": 1, "capturing": 2, "checking": 3, "detecting": 4,
               "recording": 5, "suspended": 6, "faulted": 7}

PART_ID_CHARS = 32
LOT_CHARS = 16


@dataclass(frozen=True)
class Register:
    """One entry of the map: a bit, a 16-bit value or a packed string."""

    name: str
    table: Table
    address: int
    kind: str  # "bool", "uint16" or "string"
    meaning: str
    values: str = ""
    size: int = 1  # registers (strings) or bits

    @property
    def access(self) -> str:
        return "R/W" if self.table.plc_writes else "R"

    @property
    def end(self) -> int:
        return self.address + self.size


def _result_values() -> str:
    return ", ".join(f"{int(c)} {c.name}" for c in ResultCode)


REGISTER_MAP: tuple[Register, ...] = (
    # --- coils: the PLC's commands (rising edges) and the interlock input -----------------
    Register("trigger", Table.COIL, 0, "bool",
             "rising edge 0->1 starts one inspection (only while trigger_ready is 1)"),
    Register("acknowledge", Table.COIL, 1, "bool",
             "rising edge 0->1: the PLC has read the result; result_ready drops"),
    Register("interlock", Table.COIL, 2, "bool",
             "1 = door open / shutter closed: suspend (nothing is captured); 0 = resume",
             "0 closed, 1 open"),
    Register("select_recipe", Table.COIL, 3, "bool",
             "rising edge 0->1 switches to the recipe in recipe_number; answer in recipe_status"),
    # --- discrete inputs: the station's handshake bits ------------------------------------
    Register("trigger_ready", Table.DISCRETE_INPUT, 0, "bool",
             "1 = armed, not suspended, no inspection running, last result acknowledged"),
    Register("result_ready", Table.DISCRETE_INPUT, 1, "bool",
             "1 = result_code / result_part_id hold a new result; drops on acknowledge"),
    Register("busy", Table.DISCRETE_INPUT, 2, "bool", "1 = an inspection is running"),
    Register("suspended", Table.DISCRETE_INPUT, 3, "bool",
             "1 = held by the interlock or another reason (disk nearly full)"),
    Register("interlock_active", Table.DISCRETE_INPUT, 4, "bool",
             "1 = the station holds an interlock suspension (read back of the interlock)"),
    # --- holding registers: the part in front of the camera -------------------------------
    Register("part_id", Table.HOLDING, 0, "string",
             f"part id, up to {PART_ID_CHARS} ASCII characters (empty: the station numbers the part)",
             size=PART_ID_CHARS // 2),
    Register("lot", Table.HOLDING, 16, "string",
             f"lot, up to {LOT_CHARS} ASCII characters (empty: station.lot of the config)",
             size=LOT_CHARS // 2),
    Register("recipe_number", Table.HOLDING, 24, "uint16",
             "recipe of the part (checked at trigger) / to select (select_recipe)",
             "0 = the active recipe; else a number from 'recipes'"),
    # --- input registers: what the station decided ----------------------------------------
    Register("result_code", Table.INPUT, 0, "uint16", "verdict or error code of the last trigger",
             _result_values()),
    Register("result_seq", Table.INPUT, 1, "uint16", "counts published results (wraps at 65536)"),
    Register("heartbeat", Table.INPUT, 2, "uint16",
             "seconds since the line server started (wraps): a PLC watchdog sees it change every second"),
    Register("active_recipe", Table.INPUT, 3, "uint16", "number of the active recipe",
             "0 = the start recipe has no number"),
    Register("recipe_status", Table.INPUT, 4, "uint16", "answer to the last select_recipe",
             "0 done, 12 unknown recipe, 14 busy, 17 not calibrated"),
    Register("recipe_seq", Table.INPUT, 5, "uint16", "counts answered select_recipe commands"),
    Register("confidence", Table.INPUT, 6, "uint16", "model confidence of the last result",
             "0..1000 (per mille); 0 without a model result"),
    Register("state", Table.INPUT, 7, "uint16", "inspection cycle state",
             ", ".join(f"{v} {k}" for k, v in STATE_CODES.items())),
    Register("protocol_errors", Table.INPUT, 8, "uint16",
             "triggers ignored because trigger_ready was 0 (busy or result not acknowledged)"),
    Register("result_part_id", Table.INPUT, 9, "string",
             f"part id the last result belongs to ({PART_ID_CHARS} characters)", size=PART_ID_CHARS // 2),
)

BY_NAME = {r.name: r for r in REGISTER_MAP}


def table_size(table: Table) -> int:
    """Number of addresses (bits or registers) defined in ``table``."""
    return max((r.end for r in REGISTER_MAP if r.table is table), default=0)


class PartDataError(ValueError):
    """A string register holds bytes that are not printable ASCII."""


def pack_string(text: str, registers: int) -> list[int]:
    """``text`` as ``registers`` 16-bit words, 2 ASCII characters each, high byte first."""
    raw = text.encode("ascii")
    if len(raw) > registers * 2:
        raise ValueError(f"{text!r} is longer than {registers * 2} characters")
    raw = raw.ljust(registers * 2, b"\0")
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, len(raw), 2)]


def unpack_string(words: list[int]) -> str:
    """The string in ``words`` (see :func:`pack_string`); raise PartDataError on bad bytes."""
    raw = bytearray()
    for w in words:
        raw += bytes(((w >> 8) & 0xFF, w & 0xFF))
    raw = bytes(raw).rstrip(b"\0").rstrip(b" ")
    if any(b < 0x20 or b > 0x7E for b in raw):
        raise PartDataError(f"not printable ASCII: {raw!r}")
    return raw.decode("ascii")


def markdown_table() -> str:
    """The register map as the Markdown table of ``docs/line-handshake.md``."""
    lines = ["| table | address | name | type | R/W | meaning | values |", "|---|---|---|---|---|---|---|"]
    for r in REGISTER_MAP:
        addr = str(r.address) if r.size == 1 else f"{r.address}-{r.end - 1}"
        kind = r.kind if r.kind != "string" else f"string[{r.size * 2}]"
        lines.append(f"| {r.table.value} | {addr} | `{r.name}` | {kind} | {r.access} | {r.meaning} | {r.values} |")
    return "\n".join(lines)


def result_code_table() -> str:
    """The result / error codes as a Markdown table."""
    lines = ["| code | name | meaning |", "|---|---|---|"]
    lines += [f"| {int(c)} | {c.name} | {RESULT_CODE_TEXT[c]} |" for c in ResultCode]
    return "\n".join(lines)


DOC_SECTIONS = {"register-map": markdown_table, "result-codes": result_code_table}


def render_doc(text: str) -> str:
    """``text`` with every generated section (between ``<!-- NAME:begin -->`` and
    ``<!-- NAME:end -->``) replaced by what this module defines now."""
    for name, make in DOC_SECTIONS.items():
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        head, sep, rest = text.partition(begin)
        _old, sep2, tail = rest.partition(end)
        if not (sep and sep2):
            raise ValueError(f"the page has no {begin} ... {end} section")
        text = f"{head}{begin}\n{make()}\n{end}{tail}"
    return text


if __name__ == "__main__":  # python -m station.line.registers docs/line-handshake.md: refresh the tables
    import sys
    from pathlib import Path

    page = Path(sys.argv[1])
    page.write_text(render_doc(page.read_text(encoding="utf-8")), encoding="utf-8")
