"""Who an OPC UA client proved to be, and what it may do (transport-free, no asyncua).

Two proofs exist: the client's application certificate (checked against the trusted
folder when ``line.opcua.security`` is not ``none``) and a station account's user name and
password (:mod:`station.users`, the same accounts and roles as the station window).
Reading and subscribing is open to every admitted session; writing ``Interlock`` and
selecting a recipe need the role permission ``run``, calling ``Trigger`` needs ``trigger``
(every role has both, from operator up). A session without a user name ("anonymous")
gets what ``line.opcua.anonymous`` says: ``refuse`` (not admitted), ``read``, or
``control`` (the trusted certificate, or nothing at all with ``security: none``, is
taken as enough).

The audit names what was proven (:meth:`Identity.actor`), never the ``Client`` argument a
caller declares about itself.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from station.line.opcua_pki import TrustList, subject_text, thumbprint
from station.users import ROLE_PERMISSIONS, SignInRefused, UserDirectory

log = logging.getLogger(__name__)
CONTROL = frozenset({"run", "trigger"})  # the station permissions an OPC UA client can use
AUDIT_REFUSAL_EVERY_S = 3600.0  # one audit entry per refused certificate per hour; the log gets each


@dataclass(frozen=True)
class Identity:
    """One admitted OPC UA session."""

    permissions: frozenset[str]
    username: str | None = None
    role: str | None = None
    cert_subject: str | None = None
    cert_thumbprint: str | None = None

    def may(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def actor(self) -> str:
        """The audit actor: the account, else the certificate, else ``opcua:anonymous``."""
        # the subject is cut, never the thumbprint: the actor column holds 128 characters
        cert = f"cert:{self.cert_subject[:64]} [{(self.cert_thumbprint or '')[:12]}]" if self.cert_subject else ""
        if self.username:
            text = f"opcua:user:{self.username}" + (f" via {cert}" if cert else "")
        elif cert:
            text = f"opcua:{cert}"
        else:
            text = "opcua:anonymous"
        return text[:128]

    def actor_declaring(self, client: str) -> str:
        """:attr:`actor`, plus the name the caller gave itself when nothing else identifies it."""
        client = (client or "").strip()[:40]
        if self.username or self.cert_subject or not client:
            return self.actor
        return f"opcua:anonymous (unverified client {client!r})"

    def payload(self) -> dict[str, Any]:
        return {"user": self.username, "role": self.role, "certificate": self.cert_subject,
                "thumbprint": self.cert_thumbprint}


class LineAccess:
    """Admission and permissions for the OPC UA server (its asyncua hooks call these)."""

    def __init__(self, store: Any, *, secured: bool, anonymous: str, trust: TrustList | None) -> None:
        self.store = store
        self.secured = secured
        self.anonymous = anonymous
        self.trust = trust
        self.users = UserDirectory(store)
        self._audited: dict[str, float] = {}
        self._lock = threading.Lock()

    # --- the client's application certificate (secure channel / CreateSession) ----------------
    def certificate_refusal(self, cert: x509.Certificate | None) -> str | None:
        """None when ``cert`` may connect; else the reason, logged, audited and saved to rejected/."""
        if not self.secured:
            return None
        if cert is None:
            reason = "no client certificate (security is on)"
            log.warning("OPC UA client refused: %s", reason)
            return reason
        reason = self.trust.refusal(cert) if self.trust is not None else "no trust list"
        if reason is None:
            return None
        subject, thumb = subject_text(cert), thumbprint(cert)
        saved = self.trust.save_rejected(cert) if self.trust is not None else None
        log.warning("OPC UA client certificate refused: subject %s, SHA-1 thumbprint %s: %s%s", subject, thumb,
                    reason, f" (saved as {saved}; move it to {self.trust.trusted} to trust it)" if saved else "")
        self._audit_refusal(subject, thumb, reason, saved)
        return reason

    def _audit_refusal(self, subject: str, thumb: str, reason: str, saved: Any) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._audited.get(thumb)
            if last is not None and now - last < AUDIT_REFUSAL_EVERY_S:
                return
            self._audited[thumb] = now
        try:
            self.store.audit("line.opcua_refused", subject=subject[:128], actor="station:opcua",
                             payload={"thumbprint": thumb, "reason": reason,
                                      "saved_as": str(saved) if saved else None})
        except Exception:  # refusing the client stands; the audit failure is logged loudly
            log.exception("could not audit the refused OPC UA certificate %s", thumb)

    # --- the session's user identity (ActivateSession) ----------------------------------------
    def admit(self, cert_der: bytes | None, username: str | None, password: str | None) -> Identity | None:
        """The identity of a session being activated, or None to refuse it (logged / audited).

        asyncua calls this synchronously on the server's loop: a sign-in (argon2, ~50 ms, and
        its audit commit) holds the loop that long, once per session, not per request."""
        try:
            cert = x509.load_der_x509_certificate(cert_der) if cert_der else None
        except ValueError as exc:
            log.warning("OPC UA session refused: unreadable client certificate (%s)", exc)
            return None
        if self.secured and self.certificate_refusal(cert) is not None:
            return None  # a channel whose certificate slipped past CreateSession (none sent there)
        subject = subject_text(cert) if cert is not None and self.secured else None
        thumb = thumbprint(cert) if cert is not None and self.secured else None
        if username:
            try:
                session = self.users.sign_in(username, password or "")  # audits user.signin(_failed)
            except SignInRefused:
                log.warning("OPC UA sign-in refused for user %r (certificate %s)", username, subject or "none")
                return None
            return Identity(ROLE_PERMISSIONS[session.role] & CONTROL, session.username, session.role, subject, thumb)
        if self.anonymous == "refuse":
            log.warning("OPC UA session without user name refused (line.opcua.anonymous is refuse; certificate %s)",
                        subject or "none")
            return None
        return Identity(CONTROL if self.anonymous == "control" else frozenset(), None, None, subject, thumb)

    def refused_action(self, identity: Identity, permission: str, what: str) -> None:
        """Logged, not audited: a read-only client retrying must not fill the audit chain."""
        log.warning("OPC UA %s refused for %s: needs permission %r", what, identity.actor, permission)
