"""The register map: one definition, the page that documents it, and the string packing."""
from __future__ import annotations

from pathlib import Path

import pytest

from station.line.registers import (
    REGISTER_MAP,
    PartDataError,
    ResultCode,
    Table,
    pack_string,
    render_doc,
    unpack_string,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "line-handshake.md"


def test_the_documented_map_is_the_one_the_server_uses():
    text = DOC.read_text(encoding="utf-8")
    assert render_doc(text) == text, "docs/line-handshake.md is stale: python -m station.line.registers docs/line-handshake.md"
    for reg in REGISTER_MAP:
        assert f"`{reg.name}`" in text
    for code in ResultCode:
        assert f"| {int(code)} | {code.name} |" in text


def test_no_two_entries_share_an_address():
    for table in Table:
        taken: dict[int, str] = {}
        for reg in (r for r in REGISTER_MAP if r.table is table):
            for a in range(reg.address, reg.end):
                assert a not in taken, f"{table.value} {a}: {reg.name} overlaps {taken[a]}"
                taken[a] = reg.name


def test_strings_pack_two_characters_per_register_high_byte_first():
    words = pack_string("AB-7", 3)
    assert words == [0x4142, 0x2D37, 0]
    assert unpack_string(words) == "AB-7"
    assert unpack_string(pack_string("LOT 1  ", 8)) == "LOT 1"  # trailing spaces stripped


def test_bad_strings_are_refused_with_a_reason():
    with pytest.raises(PartDataError, match="not printable"):
        unpack_string([0x4142, 0x0107])
    with pytest.raises(ValueError, match="longer than 4"):
        pack_string("TOO-LONG", 2)
    with pytest.raises(UnicodeEncodeError):
        pack_string("Teil-ä", 8)


def test_a_doc_without_the_generated_section_is_an_error():
    with pytest.raises(ValueError, match="register-map:begin"):
        render_doc("# no tables here")
