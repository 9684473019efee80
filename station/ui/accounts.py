"""The admin's accounts page: add people, change roles, disable, set a new PIN.

Every change goes through :class:`~station.users.UserDirectory` (which refuses bad input
with a clear message and audits each change) on the task runner's write queue; the page
only shows the result. Only roles with the ``users`` permission (admin) see the page.
"""
from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from station.store.schema import ROLES
from station.ui.context import UiContext
from station.users import PermissionDenied, UserError, UserInfo

COLUMNS = ("user", "name", "role", "status", "last sign-in")


class QtAccountsPage(QWidget):
    def __init__(self, ctx: UiContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.users: list[UserInfo] = []
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)

        form = QFrame()
        form.setObjectName("panel")
        grid = QGridLayout(form)
        grid.setContentsMargins(20, 16, 20, 16)
        self.username = QLineEdit()
        self.username.setPlaceholderText("user name")
        self.display_name = QLineEdit()
        self.display_name.setPlaceholderText("name shown on screen")
        self.role = QComboBox()
        self.role.addItems(list(ROLES))
        self.secret = QLineEdit()
        self.secret.setPlaceholderText("PIN / password (at least 4)")
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.add_button = QPushButton("Add account")
        self.add_button.setObjectName("startButton")
        self.add_button.clicked.connect(self.add_account)
        title = QLabel("NEW ACCOUNT / SELECTED ACCOUNT")
        title.setObjectName("panelTitle")
        grid.addWidget(title, 0, 0, 1, 4)
        grid.addWidget(self.username, 1, 0)
        grid.addWidget(self.display_name, 1, 1)
        grid.addWidget(self.role, 1, 2)
        grid.addWidget(self.secret, 1, 3)
        grid.addWidget(self.add_button, 2, 0)
        self.set_role_button = QPushButton("Give selected this role")
        self.set_role_button.clicked.connect(self.change_role)
        self.set_pin_button = QPushButton("Give selected this PIN")
        self.set_pin_button.clicked.connect(self.change_secret)
        self.toggle_button = QPushButton("Disable / enable selected")
        self.toggle_button.clicked.connect(self.toggle_disabled)
        grid.addWidget(self.set_role_button, 2, 1)
        grid.addWidget(self.set_pin_button, 2, 2)
        grid.addWidget(self.toggle_button, 2, 3)
        self.message = QLabel("")
        self.message.setWordWrap(True)

        root = QVBoxLayout(self)
        root.setContentsMargins(24, 16, 24, 16)
        root.addWidget(self.table, 1)
        root.addWidget(form)
        row = QHBoxLayout()
        row.addWidget(self.message, 1)
        root.addLayout(row)
        self.refresh()

    # --- reading ------------------------------------------------------------------------
    def refresh(self) -> None:
        users = self.ctx.users
        self.ctx.tasks.run(lambda _c: users.list(), self._show, self._failed, label="accounts")

    def _show(self, users: list[UserInfo]) -> None:
        self.users = users
        self.table.setRowCount(len(users))
        for r, u in enumerate(users):
            seen = u.last_login_at.astimezone().strftime("%Y-%m-%d %H:%M") if u.last_login_at else "never"
            for c, text in enumerate((u.username, u.display_name, u.role,
                                      "DISABLED" if u.disabled else "active", seen)):
                self.table.setItem(r, c, QTableWidgetItem(text))

    def selected(self) -> UserInfo | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        return self.users[rows[0].row()] if rows else None

    # --- changes (each audited by UserDirectory) ----------------------------------------------
    def _run(self, what: str, fn) -> None:
        try:
            actor = self.ctx.require("users", what)
        except PermissionDenied:
            return
        self.ctx.tasks.run(lambda _c: fn(actor), lambda _r: self._done(what), self._failed,
                           label=what, write=True)

    def _done(self, what: str) -> None:
        self.message.setObjectName("")
        self.message.setText(f"Done: {what}")
        self.secret.clear()
        self.refresh()

    def _failed(self, exc: BaseException) -> None:
        self.message.setText(f"Refused: {exc}" if isinstance(exc, UserError) else f"Failed: {exc}")
        if not isinstance(exc, UserError):
            self.ctx.notifier.error("Accounts", exc)

    def add_account(self) -> None:
        name = self.username.text().strip().lower()
        secret, role, shown = self.secret.text(), self.role.currentText(), self.display_name.text().strip()
        users = self.ctx.users
        self._run(f"add {role} {name}", lambda actor: users.create_user(name, secret, role, display_name=shown,
                                                                          actor=actor))

    def change_role(self) -> None:
        u = self.selected()
        if u is None:
            self.message.setText("Select an account first")
            return
        role, users = self.role.currentText(), self.ctx.users
        self._run(f"make {u.username} {role}", lambda actor: users.set_role(u.username, role, actor=actor))

    def change_secret(self) -> None:
        u = self.selected()
        if u is None:
            self.message.setText("Select an account first")
            return
        secret, users = self.secret.text(), self.ctx.users
        self._run(f"new PIN for {u.username}", lambda actor: users.set_secret(u.username, secret, actor=actor))

    def toggle_disabled(self) -> None:
        u = self.selected()
        if u is None:
            self.message.setText("Select an account first")
            return
        users, disable = self.ctx.users, not u.disabled
        what = f"{'disable' if disable else 'enable'} {u.username}"
        self._run(what, lambda actor: users.set_disabled(u.username, disable, actor=actor))
