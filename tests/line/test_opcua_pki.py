"""The OPC UA server's certificate files and the trusted folder, without a server (real files)."""
from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import serialization

from station.line.opcua_pki import (PkiError, TrustList, key_pem, load_or_create_server_certificate,
                                    make_certificate, thumbprint)

URI = "urn:linestation:p1:l1:s1"


def test_a_damaged_own_folder_is_an_error_naming_the_file_and_nothing_is_regenerated(tmp_path):
    own = tmp_path / "own"
    made = load_or_create_server_certificate(own, URI, ["localhost"], "LineStation s1")
    assert made.created and not load_or_create_server_certificate(own, URI, ["localhost"], "x").created
    cert_bytes = (own / "cert.der").read_bytes()

    os.chmod(own / "key.pem", 0o644)
    with pytest.raises(PkiError, match="readable by other users.*chmod 600"):
        load_or_create_server_certificate(own, URI, ["localhost"], "x")
    _other_cert, other_key = make_certificate("other", URI, [], server=True)
    (own / "key.pem").write_bytes(key_pem(other_key))
    os.chmod(own / "key.pem", 0o600)
    with pytest.raises(PkiError, match="key.pem is not the key of .*cert.der"):
        load_or_create_server_certificate(own, URI, ["localhost"], "x")
    (own / "cert.der").write_bytes(b"not a certificate")
    with pytest.raises(PkiError, match="cert.der is not a DER certificate"):
        load_or_create_server_certificate(own, URI, ["localhost"], "x")
    assert sorted(p.name for p in own.iterdir()) == ["cert.der", "key.pem"]  # nothing replaced
    assert cert_bytes != (own / "cert.der").read_bytes()


def test_the_trust_list_reads_der_and_pem_skips_junk_and_refuses_expired_certificates(tmp_path, caplog):
    trust = TrustList(tmp_path / "trusted", tmp_path / "rejected")
    trust.ensure_dirs()
    a, _ = make_certificate("client a", "urn:a", [], server=False)
    b, _ = make_certificate("client b", "urn:b", [], server=False)
    old, _ = make_certificate("client old", "urn:old", [], server=False, days=-1)
    (trust.trusted / "a.der").write_bytes(a.public_bytes(serialization.Encoding.DER))
    (trust.trusted / "b.pem").write_bytes(b.public_bytes(serialization.Encoding.PEM))
    (trust.trusted / "old.der").write_bytes(old.public_bytes(serialization.Encoding.DER))
    (trust.trusted / "junk.crt").write_bytes(b"\x00garbage")
    assert trust.refusal(a) is None and trust.refusal(b) is None
    assert "expired" in trust.refusal(old)
    assert "junk.crt" in caplog.text and caplog.text.count("junk.crt") == 1  # said once, not per session
    stranger, _ = make_certificate("stranger", "urn:s", [], server=False)
    assert "not in" in trust.refusal(stranger)
    saved = trust.save_rejected(stranger)
    assert saved.name == f"{thumbprint(stranger)}.der" and trust.refusal(stranger) is not None
