"""Accounts, roles and sign-in on a real station database (no Qt)."""
from __future__ import annotations

import pytest

from station.store.station_store import StationStore
from station.users import (
    ROLE_PERMISSIONS,
    PermissionDenied,
    SignInRefused,
    UserDirectory,
    UserError,
)


@pytest.fixture
def users(tmp_path):
    store = StationStore(tmp_path / "data")
    yield UserDirectory(store)
    store.close()


def _actions(users: UserDirectory) -> list[tuple[str, str, str]]:
    return [(e["action"], e["actor"], e["subject"]) for e in users.store.audit_entries(limit=500)]


def test_roles_are_cumulative_and_admin_alone_manages_users():
    assert ROLE_PERMISSIONS["operator"] == {"view", "run", "trigger"}
    assert ROLE_PERMISSIONS["operator"] < ROLE_PERMISSIONS["supervisor"] < ROLE_PERMISSIONS["technician"]
    assert ROLE_PERMISSIONS["technician"] < ROLE_PERMISSIONS["admin"]
    assert "review" in ROLE_PERMISSIONS["supervisor"] and "calibrate" not in ROLE_PERMISSIONS["supervisor"]
    assert {"calibrate", "models"} <= ROLE_PERMISSIONS["technician"]
    assert [r for r, p in ROLE_PERMISSIONS.items() if "users" in p] == ["admin"]


def test_first_admin_then_accounts_and_sign_in(users):
    assert users.needs_first_admin()
    users.create_first_admin("boss", "s3cret-pass", "The Boss")
    assert not users.needs_first_admin()
    with pytest.raises(UserError, match="exists already"):
        users.create_first_admin("boss2", "another-pass")
    admin = users.sign_in("Boss ", "s3cret-pass")  # names are trimmed and lower-cased
    assert admin.role == "admin" and admin.can("users")
    users.create_user("olga", "1357", "operator", actor=admin)
    olga = users.sign_in("olga", "1357")
    assert olga.can("trigger") and not olga.can("review")
    with pytest.raises(PermissionDenied):
        users.create_user("eve", "2468", "admin", actor=olga)
    assert users.get("eve") is None
    users.sign_out(olga, "manual")
    acts = _actions(users)
    assert ("user.created", "first-run", "boss") in acts
    assert ("user.created", "boss", "olga") in acts
    assert ("user.signin", "olga", "olga") in acts and ("user.signout", "olga", "olga") in acts
    assert users.store.audit_verify().ok


def test_bad_input_is_refused_with_a_clear_error_and_changes_nothing(users):
    users.create_first_admin("boss", "s3cret-pass")
    admin = users.sign_in("boss", "s3cret-pass")
    n = len(_actions(users))
    for name, secret, role, msg in [
        ("Bad Name", "1234", "operator", "user names"),
        ("x", "1234", "operator", "user names"),
        ("olga", "12", "operator", "at least 4"),
        ("olga", " 1234", "operator", "space"),
        ("olga", "1234", "boss", "unknown role"),
        ("boss", "1234", "operator", "exists already"),
    ]:
        with pytest.raises(UserError, match=msg):
            users.create_user(name, secret, role, actor=admin)
    assert [u.username for u in users.list()] == ["boss"]
    assert len(_actions(users)) == n


def test_failed_sign_ins_are_audited_and_say_the_same(users):
    users.create_first_admin("boss", "s3cret-pass")
    admin = users.sign_in("boss", "s3cret-pass")
    users.create_user("olga", "1357", "operator", actor=admin)
    messages = set()
    for name, secret in [("olga", "9999"), ("ghost", "1357"), ("olga", "")]:
        with pytest.raises(SignInRefused) as err:
            users.sign_in(name, secret)
        messages.add(str(err.value))
    assert len(messages) == 1
    users.set_disabled("olga", True, actor=admin)
    with pytest.raises(SignInRefused):
        users.sign_in("olga", "1357")
    reasons = [e["payload"]["reason"] for e in users.store.audit_entries(limit=100)
               if e["action"] == "user.signin_failed"]
    assert reasons == ["wrong password", "unknown user", "wrong password", "account disabled"]
    with pytest.raises(UserError, match="your own"):
        users.set_disabled("boss", True, actor=admin)


def test_pin_change_and_role_change(users):
    users.create_first_admin("boss", "s3cret-pass")
    admin = users.sign_in("boss", "s3cret-pass")
    users.create_user("olga", "1357", "operator", actor=admin)
    olga = users.sign_in("olga", "1357")
    users.set_secret("olga", "8642", actor=olga)
    with pytest.raises(SignInRefused):
        users.sign_in("olga", "1357")
    assert users.sign_in("olga", "8642").role == "operator"
    with pytest.raises(PermissionDenied):
        users.set_secret("boss", "0000", actor=olga)
    with pytest.raises(PermissionDenied):
        users.set_role("olga", "admin", actor=olga)
    users.set_role("olga", "supervisor", actor=admin)
    assert users.sign_in("olga", "8642").can("review")
