"""Certificates of the station's OPC UA server: its own, and the clients it trusts.

Layout under ``line.opcua.pki_dir`` (default ``<data dir>/opcua-pki``), as OPC UA tools
lay it out, so an administrator finds the usual places:

- ``own/cert.der`` and ``own/key.pem``: the server's application instance certificate and
  its private key (``own/`` 0700, the key 0600). Created once, on the first secured start,
  written durably (temp folder, fsync, rename); reused on every restart. A damaged or
  half-present pair is an error that names the files, never silently replaced: clients
  trust this exact certificate, and a new one would lock them all out.
- ``trusted/``: client certificates (DER or PEM) allowed to connect. Read on every new
  session, so trusting a client takes a file copy, not a restart.
- ``rejected/``: every refused client certificate is saved here as ``<thumbprint>.der``;
  trusting it is moving the file to ``trusted/``.

No asyncua here (``cryptography`` only): the asyncua glue is :mod:`station.line.opcua_server`.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from station.durable import fsync_dir, write_synced

log = logging.getLogger(__name__)
CERT_FILE, KEY_FILE = "cert.der", "key.pem"
VALID_DAYS = 3650  # re-trusting a station on every client is a line stop; ten years, renewed by hand
MAX_REJECTED = 100  # a misconfigured client retrying must not fill the disk
_CERT_SUFFIXES = {".der", ".pem", ".crt", ".cer"}


class PkiError(RuntimeError):
    """The server's certificate or key cannot be used (names the file and what to do)."""


def thumbprint(cert: x509.Certificate) -> str:
    """SHA-1 of the DER certificate in hex: what OPC UA tools (UaExpert, Prosys) display."""
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - an identifier, not a signature


def subject_text(cert: x509.Certificate) -> str:
    """``CN=...,O=...`` in the certificate's own order (as OPC UA tools show it)."""
    return ",".join(attr.rfc4514_string() for attr in cert.subject) or "(empty subject)"


def make_certificate(common_name: str, application_uri: str, hosts: list[str], *, server: bool,
                     days: int = VALID_DAYS) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A self-signed OPC UA application instance certificate (OPC 10000-6 6.2.2): RSA 2048,
    SHA-256, the application URI and ``hosts`` (DNS names / IP addresses) as alt names."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "LineStation")])
    alt: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    for host in dict.fromkeys(h for h in hosts if h):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    now = dt.datetime.now(dt.timezone.utc)
    start = now - dt.timedelta(minutes=5) if days > 0 else now + dt.timedelta(days=days - 1)  # days < 0: expired
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=True,
                                         data_encipherment=True, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass(frozen=True)
class ServerCertificate:
    cert_path: Path
    key_path: Path
    cert: x509.Certificate
    created: bool  # made on this start (audited by the caller)

    @property
    def thumbprint(self) -> str:
        return thumbprint(self.cert)


def load_or_create_server_certificate(own: Path, application_uri: str, hosts: list[str],
                                      common_name: str) -> ServerCertificate:
    """The server's certificate and key from ``own``; created there when ``own`` does not exist."""
    if not own.exists():
        cert, key = make_certificate(common_name, application_uri, hosts, server=True)
        _publish_own(own, cert, key)
        log.warning("created the OPC UA server certificate %s (SHA-1 %s); clients must trust it",
                    own / CERT_FILE, thumbprint(cert))
        return ServerCertificate(own / CERT_FILE, own / KEY_FILE, cert, True)
    cert_path, key_path = own / CERT_FILE, own / KEY_FILE
    fix = (f"restore them from a backup, or delete {own} to create a new certificate "
           f"(every client must then trust the new one)")
    for path in (cert_path, key_path):
        if not path.is_file():
            raise PkiError(f"{path} is missing; the station never replaces its OPC UA certificate silently: {fix}")
    if os.name == "posix" and key_path.stat().st_mode & 0o077:
        raise PkiError(f"{key_path} is readable by other users (mode {key_path.stat().st_mode & 0o777:o}); "
                       f"run chmod 600 {key_path}")
    try:
        cert = x509.load_der_x509_certificate(cert_path.read_bytes())
    except ValueError as exc:
        raise PkiError(f"{cert_path} is not a DER certificate ({exc}): {fix}") from None
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise PkiError(f"{key_path} is not an unencrypted PEM private key ({exc}): {fix}") from None
    if key.public_key().public_numbers() != cert.public_key().public_numbers():
        raise PkiError(f"{key_path} is not the key of {cert_path}: {fix}")
    if cert.not_valid_after_utc < dt.datetime.now(dt.timezone.utc):
        raise PkiError(f"{cert_path} expired on {cert.not_valid_after_utc:%Y-%m-%d}: delete {own} to create a "
                       f"new certificate and have every client trust it")
    return ServerCertificate(cert_path, key_path, cert, False)


def _publish_own(own: Path, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> None:
    """Both files or neither: written into a private temp folder, fsynced, renamed into place."""
    own.parent.mkdir(parents=True, exist_ok=True)
    tmp = own.parent / f".{own.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir(mode=0o700)
    try:
        write_synced(tmp / KEY_FILE, key_pem(key), mode=0o600)
        write_synced(tmp / CERT_FILE, cert.public_bytes(serialization.Encoding.DER), mode=0o644)
        fsync_dir(tmp)
        os.rename(tmp, own)
        fsync_dir(own.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_certificate_file(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


class TrustList:
    """The ``trusted/`` folder (exact certificates, self-signed or not) and ``rejected/``."""

    def __init__(self, trusted: Path, rejected: Path) -> None:
        self.trusted = trusted
        self.rejected = rejected
        self._bad_files: set[Path] = set()

    def ensure_dirs(self) -> None:
        self.trusted.mkdir(parents=True, exist_ok=True)
        self.rejected.mkdir(parents=True, exist_ok=True)

    def trusted_thumbprints(self) -> set[str]:
        """Read on every call: a copied-in certificate counts from the next session on."""
        out = set()
        for path in sorted(self.trusted.iterdir()) if self.trusted.is_dir() else []:
            if path.suffix.lower() not in _CERT_SUFFIXES or not path.is_file():
                continue
            try:
                out.add(thumbprint(load_certificate_file(path)))
            except (OSError, ValueError) as exc:
                if path not in self._bad_files:  # once per file, not once per session
                    self._bad_files.add(path)
                    log.warning("ignoring %s in the trusted client certificates: not a certificate (%s)", path, exc)
        return out

    def refusal(self, cert: x509.Certificate) -> str | None:
        """Why ``cert`` may not connect, or None when it is trusted and valid now."""
        now = dt.datetime.now(dt.timezone.utc)
        if cert.not_valid_after_utc < now:
            return f"certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}"
        if cert.not_valid_before_utc > now:
            return f"certificate not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        if thumbprint(cert) not in self.trusted_thumbprints():
            return f"certificate not in {self.trusted}"
        return None

    def save_rejected(self, cert: x509.Certificate) -> Path | None:
        """Keep a refused certificate where an administrator can trust it (move to trusted/)."""
        path = self.rejected / f"{thumbprint(cert)}.der"
        try:
            if path.exists():
                return path
            self.rejected.mkdir(parents=True, exist_ok=True)
            if sum(1 for _ in self.rejected.iterdir()) >= MAX_REJECTED:
                return None
            write_synced(path, cert.public_bytes(serialization.Encoding.DER), mode=0o644)
        except OSError as exc:
            log.warning("could not save the refused certificate to %s: %s", path, exc)
            return None
        return path
