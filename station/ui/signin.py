"""The sign-in screen (large, touch friendly) and the first run's admin account.

A numeric keypad is on screen for gloved hands and touch panels; the keyboard works too.
A refused sign-in says so without telling whether the name or the PIN was wrong, clears
the PIN and is written to the audit log (by :class:`~station.users.UserDirectory`).
In demo mode (``ui.demo_mode``, set by ``linestation demo``) the screen also offers
password-less demo operator / supervisor / technician buttons.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from station.store.errors import StoreError
from station.users import DEMO_PREFIX, DEMO_ROLES, Session, SignInRefused, UserDirectory, UserError


def _title(text: str, px: int = 44) -> QLabel:
    label = QLabel(text)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setStyleSheet(f"font-size: {px}px; font-weight: bold;")
    return label


def _card() -> tuple[QWidget, QVBoxLayout]:
    """A centred column on the page."""
    outer = QWidget()
    h = QHBoxLayout(outer)
    card = QFrame()
    card.setObjectName("panel")
    card.setFixedWidth(720)
    h.addStretch(1)
    h.addWidget(card)
    h.addStretch(1)
    lay = QVBoxLayout(card)
    lay.setContentsMargins(40, 32, 40, 32)
    lay.setSpacing(16)
    return outer, lay


class QtSignInScreen(QWidget):
    """User name + password / PIN, an on-screen keypad, and demo buttons in demo mode."""

    signed_in = Signal(object)  # Session

    def __init__(self, users: UserDirectory, *, demo_mode: bool = False) -> None:
        super().__init__()
        self.users = users
        self.demo_mode = demo_mode
        outer, lay = _card()
        root = QVBoxLayout(self)
        root.addStretch(1)
        root.addWidget(outer)
        root.addStretch(1)

        lay.addWidget(_title("Sign in"))
        self.username = QLineEdit()
        self.username.setPlaceholderText("user name")
        self.username.setObjectName("username")
        self.secret = QLineEdit()
        self.secret.setPlaceholderText("PIN or password")
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.secret.setObjectName("secret")
        self.username.returnPressed.connect(self.secret.setFocus)
        self.secret.returnPressed.connect(self.submit)
        lay.addWidget(self.username)
        lay.addWidget(self.secret)

        pad = QGridLayout()
        pad.setSpacing(10)
        keys = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "⌫", "0", "OK"]
        for i, key in enumerate(keys):
            b = QPushButton(key)
            b.setMinimumSize(150, 72)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.setStyleSheet("font-size: 32px;")
            b.clicked.connect(lambda _=False, k=key: self._key(k))
            pad.addWidget(b, i // 3, i % 3)
        lay.addLayout(pad)

        self.error = QLabel("")
        self.error.setObjectName("error")
        self.error.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.error.hide()
        lay.addWidget(self.error)
        self.sign_in_button = QPushButton("Sign in")
        self.sign_in_button.setObjectName("startButton")
        self.sign_in_button.setMinimumHeight(72)
        self.sign_in_button.clicked.connect(self.submit)
        lay.addWidget(self.sign_in_button)

        self.demo_buttons: dict[str, QPushButton] = {}
        if demo_mode:
            note = QLabel("Demo mode: try a role without a password")
            note.setObjectName("muted")
            note.setAlignment(Qt.AlignmentFlag.AlignCenter)
            lay.addWidget(note)
            row = QHBoxLayout()
            for role in DEMO_ROLES:
                b = QPushButton(role.capitalize())
                b.setMinimumHeight(64)
                b.clicked.connect(lambda _=False, r=role: self.demo_sign_in(r))
                row.addWidget(b)
                self.demo_buttons[role] = b
            lay.addLayout(row)

    def reset(self) -> None:
        self.secret.clear()
        self.error.hide()
        self.username.setFocus()

    def _key(self, key: str) -> None:
        if key == "OK":
            self.submit()
        elif key == "⌫":
            self.secret.backspace()
        else:
            self.secret.insert(key)

    def _refuse(self, text: str) -> None:
        self.error.setText(text)
        self.error.show()
        self.secret.clear()
        self.secret.setFocus()

    def submit(self) -> None:
        """Try the entered name and secret (audited either way)."""
        try:
            session = self.users.sign_in(self.username.text(), self.secret.text())
        except SignInRefused as exc:
            self._refuse(str(exc))
            return
        except StoreError as exc:
            self._refuse(f"cannot sign in: {exc}")
            return
        self.secret.clear()
        self.error.hide()
        self.signed_in.emit(session)

    def demo_sign_in(self, role: str) -> Session | None:
        if not self.demo_mode:
            return None
        self.users.ensure_demo_users()
        session = self.users.demo_sign_in(f"{DEMO_PREFIX}{role}")
        self.signed_in.emit(session)
        return session


class QtFirstRunScreen(QWidget):
    """First run: nobody can sign in yet, so the station asks for its admin account."""

    created = Signal(object)  # Session of the new admin, signed in

    def __init__(self, users: UserDirectory) -> None:
        super().__init__()
        self.users = users
        outer, lay = _card()
        root = QVBoxLayout(self)
        root.addStretch(1)
        root.addWidget(outer)
        root.addStretch(1)
        lay.addWidget(_title("Welcome to LineStation", 40))
        intro = QLabel("This station has no accounts yet. Create the admin account: the admin "
                       "adds operators, supervisors and technicians.")
        intro.setWordWrap(True)
        intro.setObjectName("muted")
        lay.addWidget(intro)
        self.username = QLineEdit("admin")
        self.username.setObjectName("username")
        self.display_name = QLineEdit()
        self.display_name.setPlaceholderText("your name (shown on screen)")
        self.secret = QLineEdit()
        self.secret.setPlaceholderText("password or PIN (at least 4 characters)")
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.repeat = QLineEdit()
        self.repeat.setPlaceholderText("repeat it")
        self.repeat.setEchoMode(QLineEdit.EchoMode.Password)
        self.repeat.returnPressed.connect(self.submit)
        for w in (self.username, self.display_name, self.secret, self.repeat):
            lay.addWidget(w)
        self.error = QLabel("")
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.hide()
        lay.addWidget(self.error)
        self.create_button = QPushButton("Create admin and sign in")
        self.create_button.setObjectName("startButton")
        self.create_button.setMinimumHeight(72)
        self.create_button.clicked.connect(self.submit)
        lay.addWidget(self.create_button)

    def submit(self) -> None:
        name = self.username.text().strip().lower()
        if self.secret.text() != self.repeat.text():
            self._refuse("the two entries differ; type the password / PIN again")
            return
        try:
            self.users.create_first_admin(name, self.secret.text(), self.display_name.text().strip())
            session = self.users.sign_in(name, self.secret.text())
        except (UserError, StoreError) as exc:
            self._refuse(str(exc))
            return
        self.secret.clear()
        self.repeat.clear()
        self.created.emit(session)

    def _refuse(self, text: str) -> None:
        self.error.setText(text)
        self.error.show()
        self.secret.clear()
        self.repeat.clear()
        self.secret.setFocus()
