"""People at the station: accounts, roles, permissions and sign-in (Qt-free).

Accounts live in the ``users`` table of the station database; only argon2id hashes of
passwords / PINs are stored. Every account change, sign-in, sign-out and failed attempt
is written to the hash-chained audit log in the same transaction as the change itself.

Roles are cumulative: a supervisor can do what an operator can, a technician what a
supervisor can, an admin everything.
"""
from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from station.store import audit as audit_log
from station.store.errors import StoreError
from station.store.schema import ROLES, User
from station.store.station_store import StationStore

# What each permission lets a person do (the UI gates pages and buttons on these).
PERMISSIONS = {
    "view": "see the operator screen",
    "run": "start and stop the line",
    "trigger": "trigger a single inspection by hand",
    "review": "decide review-queue items (confirm defect, mark good, recapture)",
    "calibrate": "run the calibration wizard and roll back calibrations",
    "models": "train, evaluate, deploy and roll back models",
    "users": "create, disable and change accounts",
}
_OPERATOR = frozenset({"view", "run", "trigger"})
_SUPERVISOR = _OPERATOR | {"review"}
_TECHNICIAN = _SUPERVISOR | {"calibrate", "models"}
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "operator": _OPERATOR,
    "supervisor": frozenset(_SUPERVISOR),
    "technician": frozenset(_TECHNICIAN),
    "admin": frozenset(PERMISSIONS),
}
assert set(ROLE_PERMISSIONS) == set(ROLES)

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
MIN_SECRET_LEN = 4  # a 4-digit PIN is the shortest a gloved hand types quickly
MAX_SECRET_LEN = 128
DEMO_PREFIX = "demo-"
DEMO_ROLES = ("operator", "supervisor", "technician")

# Moderate argon2id cost: ~30-60 ms on a station PC per sign-in, 32 MiB.
_HASHER = PasswordHasher(time_cost=2, memory_cost=32 * 1024, parallelism=1)


class UserError(ValueError):
    """A request about accounts was refused (bad name, short PIN, unknown role...)."""


class SignInRefused(UserError):
    """Wrong user name or password / PIN, or a disabled account (deliberately not told apart)."""


class PermissionDenied(UserError):
    """The signed-in role may not do this."""


@dataclass(frozen=True)
class UserInfo:
    username: str
    display_name: str
    role: str
    disabled: bool = False
    last_login_at: datetime | None = None

    @property
    def shown_name(self) -> str:
        return self.display_name or self.username


@dataclass
class Session:
    """One person signed in at the station."""

    user: UserInfo
    started_at: float = field(default_factory=time.time)
    demo: bool = False  # signed in through the demo quick sign-in (no password)

    @property
    def username(self) -> str:
        return self.user.username

    @property
    def role(self) -> str:
        return self.user.role

    def can(self, permission: str) -> bool:
        if permission not in PERMISSIONS:
            raise KeyError(f"unknown permission {permission!r}")
        return permission in ROLE_PERMISSIONS[self.user.role]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _info(row: User | object) -> UserInfo:
    return UserInfo(row.username, row.display_name or "", row.role, bool(row.disabled), row.last_login_at)


def check_secret(secret: str) -> None:
    if not isinstance(secret, str) or len(secret) < MIN_SECRET_LEN:
        raise UserError(f"the password / PIN needs at least {MIN_SECRET_LEN} characters")
    if len(secret) > MAX_SECRET_LEN:
        raise UserError(f"the password / PIN may have at most {MAX_SECRET_LEN} characters")
    if secret.strip() != secret:
        raise UserError("the password / PIN may not start or end with a space")


def check_username(username: str) -> None:
    if not isinstance(username, str) or not USERNAME_RE.match(username):
        raise UserError("user names are 2-32 characters: lower-case letters, digits, '.', '_' or '-', "
                        "starting with a letter or digit")


class UserDirectory:
    """Accounts and sign-in on a :class:`StationStore`'s database."""

    def __init__(self, store: StationStore) -> None:
        self.store = store
        self._table = User.__table__

    # --- reading ---------------------------------------------------------------------
    def count(self, *, include_demo: bool = True) -> int:
        q = select(func.count()).select_from(self._table)
        if not include_demo:
            q = q.where(~self._table.c.username.startswith(DEMO_PREFIX))
        with self.store.reader.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def needs_first_admin(self) -> bool:
        """True until an admin account exists: the first run asks for one."""
        q = select(func.count()).select_from(self._table).where(self._table.c.role == "admin")
        with self.store.reader.connect() as conn:
            return int(conn.execute(q).scalar_one()) == 0

    def get(self, username: str) -> UserInfo | None:
        with self.store.reader.connect() as conn:
            row = conn.execute(select(self._table).where(self._table.c.username == username)).first()
        return _info(row) if row else None

    def list(self) -> list[UserInfo]:
        with self.store.reader.connect() as conn:
            return [_info(r) for r in conn.execute(select(self._table).order_by(self._table.c.username))]

    # --- writing (each in one short transaction with its audit entry) -----------------
    def _write(self, what: str, fn) -> object:
        try:
            with self.store.engine.begin() as conn:
                return fn(conn)
        except IntegrityError as exc:
            raise UserError(f"{what}: {exc.orig}") from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"database error, {what} not saved: {exc}") from exc

    def create_user(self, username: str, secret: str, role: str, *, display_name: str = "",
                    actor: Session | None) -> UserInfo:
        """Create an account; ``actor`` must be allowed to manage users."""
        if actor is None or not actor.can("users"):
            raise PermissionDenied("only an admin can create accounts")
        return self._create(username, secret, role, display_name, actor.username)

    def create_first_admin(self, username: str, secret: str, display_name: str = "") -> UserInfo:
        """The first run's admin account; refused once any admin exists."""
        if not self.needs_first_admin():
            raise UserError("an admin account exists already; sign in as admin to add accounts")
        return self._create(username, secret, "admin", display_name, "first-run")

    def _create(self, username: str, secret: str, role: str, display_name: str, actor: str,
                *, password_hash: str | None = None) -> UserInfo:
        check_username(username)
        if role not in ROLES:
            raise UserError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        if password_hash is None:
            check_secret(secret)
            password_hash = _HASHER.hash(secret)
        if len(display_name) > 128:
            raise UserError("display names may have at most 128 characters")

        def tx(conn):
            exists = conn.execute(select(self._table.c.id).where(self._table.c.username == username)).first()
            if exists:
                raise UserError(f"user {username!r} exists already")
            conn.execute(insert(self._table).values(
                username=username, display_name=display_name, role=role, password_hash=password_hash,
                created_at=_now(), disabled=False))
            audit_log.append(conn, actor=actor, action="user.created", subject=username,
                             payload={"role": role, "display_name": display_name})
        self._write(f"account {username!r}", tx)
        return UserInfo(username, display_name, role)

    def set_disabled(self, username: str, disabled: bool, *, actor: Session) -> None:
        if not actor.can("users"):
            raise PermissionDenied("only an admin can disable accounts")
        if username == actor.username and disabled:
            raise UserError("you cannot disable your own account")
        self._update(username, {"disabled": disabled}, actor.username,
                     "user.disabled" if disabled else "user.enabled", {})

    def set_role(self, username: str, role: str, *, actor: Session) -> None:
        if not actor.can("users"):
            raise PermissionDenied("only an admin can change roles")
        if role not in ROLES:
            raise UserError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        self._update(username, {"role": role}, actor.username, "user.role_changed", {"role": role})

    def set_secret(self, username: str, secret: str, *, actor: Session) -> None:
        """Change a password / PIN: one's own, or anyone's as admin."""
        if username != actor.username and not actor.can("users"):
            raise PermissionDenied("only an admin can change another person's PIN")
        check_secret(secret)
        self._update(username, {"password_hash": _HASHER.hash(secret)}, actor.username,
                     "user.secret_changed", {})

    def _update(self, username: str, values: dict, actor: str, action: str, payload: dict) -> None:
        def tx(conn):
            n = conn.execute(update(self._table).where(self._table.c.username == username).values(**values)).rowcount
            if n != 1:
                raise UserError(f"no user {username!r}")
            audit_log.append(conn, actor=actor, action=action, subject=username, payload=payload)
        self._write(f"{action} for {username!r}", tx)

    # --- signing in and out -----------------------------------------------------------
    def sign_in(self, username: str, secret: str) -> Session:
        """Check the password / PIN; audited whether it succeeds or not.

        Raises :class:`SignInRefused` with the same message for an unknown user, a wrong
        secret and a disabled account, so the screen does not reveal which names exist.
        """
        username = (username or "").strip().lower()
        with self.store.reader.connect() as conn:
            row = conn.execute(select(self._table).where(self._table.c.username == username)).first()
        reason = None
        if row is None:
            reason = "unknown user"
            _HASHER.hash("timing-equaliser")  # answer as slowly as for a real account
        elif row.disabled:
            reason = "account disabled"
        else:
            try:
                _HASHER.verify(row.password_hash, secret or "")
            except VerifyMismatchError:
                reason = "wrong password"
            except (VerificationError, InvalidHashError):
                reason = "account has no usable password"
        if reason is not None:
            self._write("failed sign-in record", lambda conn: audit_log.append(
                conn, actor=username or "(empty)", action="user.signin_failed", subject=username,
                payload={"reason": reason}))
            raise SignInRefused("unknown user name or wrong password / PIN")
        values = {"last_login_at": _now()}
        if _HASHER.check_needs_rehash(row.password_hash):
            values["password_hash"] = _HASHER.hash(secret)
        self._update(username, values, username, "user.signin", {"role": row.role})
        return Session(_info(row))

    def sign_out(self, session: Session, reason: str = "manual") -> None:
        """``reason``: manual, idle (the idle timer), closed (the app was closed)."""
        self._write("sign-out record", lambda conn: audit_log.append(
            conn, actor=session.username, action="user.signout", subject=session.username,
            payload={"reason": reason, "minutes": round((time.time() - session.started_at) / 60.0, 2)}))

    def record_refusal(self, session: Session | None, permission: str, what: str) -> None:
        """Audit an attempt to do something the role may not do."""
        who = session.username if session else "(nobody)"
        self._write("refusal record", lambda conn: audit_log.append(
            conn, actor=who, action="user.refused", subject=what,
            payload={"permission": permission, "role": session.role if session else None}))

    # --- demo mode --------------------------------------------------------------------
    def ensure_demo_users(self) -> list[UserInfo]:
        """Accounts ``demo-operator``, ``demo-supervisor``, ``demo-technician`` for demo mode.

        They get a random password nobody knows (there are no built-in passwords); demo
        mode signs them in with :meth:`demo_sign_in` instead. Outside demo mode they cannot
        sign in at all.
        """
        out = []
        for role in DEMO_ROLES:
            name = f"{DEMO_PREFIX}{role}"
            info = self.get(name)
            if info is None:
                info = self._create(name, "", role, f"Demo {role}", "demo-mode",
                                    password_hash=_HASHER.hash(secrets.token_urlsafe(24)))
            out.append(info)
        return out

    def demo_sign_in(self, username: str) -> Session:
        """Sign a demo account in without a password (demo mode only; audited as such)."""
        info = self.get(username)
        if info is None or not username.startswith(DEMO_PREFIX) or info.disabled:
            raise SignInRefused(f"{username!r} is not a demo account")
        self._update(username, {"last_login_at": _now()}, username, "user.signin",
                     {"role": info.role, "demo_quick": True})
        return Session(info, demo=True)
