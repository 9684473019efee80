"""The admin adds and manages accounts on the accounts page; others never see it."""
from __future__ import annotations

from PySide6.QtCore import Qt

from conftest import PIN, audit_actions, make_user, sign_in


def _wait_rows(qtbot, page, n: int) -> None:
    qtbot.waitUntil(lambda: page.table.rowCount() == n, timeout=10_000)


def test_admin_adds_an_operator_who_then_signs_in(qtbot, station_window):
    win, ctx = station_window()
    ctx.users.create_first_admin("admin", PIN)
    sign_in(qtbot, win, "admin")
    page = win.pages["accounts"]
    _wait_rows(qtbot, page, 1)

    # bad input: refused with the reason, nothing added
    page.username.setText("Olga Smith")
    page.secret.setText("1357")
    page.role.setCurrentText("operator")
    qtbot.mouseClick(page.add_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.message.text().startswith("Refused"), timeout=10_000)
    assert "user names" in page.message.text() and ctx.users.get("olga smith") is None

    page.username.setText("olga")
    page.display_name.setText("Olga")
    qtbot.mouseClick(page.add_button, Qt.MouseButton.LeftButton)
    _wait_rows(qtbot, page, 2)
    assert ctx.users.get("olga").role == "operator"

    page.table.selectRow([u.username for u in page.users].index("olga"))
    page.role.setCurrentText("supervisor")
    qtbot.mouseClick(page.set_role_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: ctx.users.get("olga").role == "supervisor", timeout=10_000)
    qtbot.mouseClick(page.toggle_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: ctx.users.get("olga").disabled, timeout=10_000)
    acts = audit_actions(ctx.store)
    assert ("user.created", "admin", "olga") in acts
    assert ("user.role_changed", "admin", "olga") in acts and ("user.disabled", "admin", "olga") in acts

    win.sign_out()
    win.sign_in_screen.username.setText("olga")
    win.sign_in_screen.secret.setText("1357")
    win.sign_in_screen.submit()
    assert ctx.session is None  # disabled


def test_only_admins_see_the_accounts_page(qtbot, station_window):
    win, ctx = station_window()
    make_user(ctx, "tess", "technician")
    sign_in(qtbot, win, "tess")
    assert "accounts" not in win.pages
    assert not win.show_page("accounts")
    assert ("user.refused", "tess", "open the Accounts page") in audit_actions(ctx.store)
