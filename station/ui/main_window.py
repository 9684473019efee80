"""The station window: first-run admin, sign-in, then the pages the signed-in role may see.

Pages come from :data:`station.ui.pages.PAGES` (or :meth:`QtMainWindow.register_page`);
each is built for a session and destroyed at sign-out, so a page never outlives the
person it was built for. The status bar shows the station's health on every screen.
An application-wide event filter notices input; after ``ui.idle_signout_min`` minutes
without any, the person is signed out (audited as an idle sign-out).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from station.ui.context import UiContext
from station.ui.health import QtHealthBar
from station.ui.notify import Notice
from station.ui.pages import PAGES, PageSpec
from station.ui.signin import QtFirstRunScreen, QtSignInScreen
from station.ui.theme import NOTICE_STYLE, STYLESHEET
from station.users import PermissionDenied, Session

log = logging.getLogger(__name__)

NOTICE_SHOWN_MS = {"info": 8_000, "warning": 15_000, "error": 60_000, "alarm": 30_000}

_INPUT_EVENTS = frozenset({
    QEvent.Type.MouseButtonPress, QEvent.Type.MouseMove, QEvent.Type.KeyPress,
    QEvent.Type.TouchBegin, QEvent.Type.TouchUpdate, QEvent.Type.Wheel,
})


class _InputWatcher(QObject):
    """Notes the time of the last keyboard / mouse / touch input anywhere in the app."""

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self.last_input = time.monotonic()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if event.type() in _INPUT_EVENTS:
            self.last_input = time.monotonic()
        return False


class QtMainWindow(QMainWindow):
    """The one window of the station application."""

    closed = Signal()  # after shutdown: the application quits on it

    def __init__(self, ctx: UiContext, pages: list[PageSpec] | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self._specs: list[PageSpec] = list(PAGES if pages is None else pages)
        self._pages: dict[str, QWidget] = {}
        self._closed = False
        cfg = ctx.runtime.cfg
        self.setWindowTitle(f"LineStation - {cfg.station.plant} / {cfg.station.line} / {cfg.station.station}")
        self.setStyleSheet(STYLESHEET)

        self._stack = QStackedWidget()
        self.setCentralWidget(self._stack)
        self.first_run = QtFirstRunScreen(ctx.users)
        self.first_run.created.connect(self._signed_in)
        self.sign_in_screen = QtSignInScreen(ctx.users, demo_mode=ctx.ui_cfg.demo_mode)
        self.sign_in_screen.signed_in.connect(self._signed_in)
        self._station = QWidget()
        self._build_station_view()
        for w in (self.first_run, self.sign_in_screen, self._station):
            self._stack.addWidget(w)

        self.health_bar = QtHealthBar(ctx)
        self.statusBar().addPermanentWidget(self.health_bar, 1)
        ctx.notifier.posted.connect(self._show_notice)

        self._watcher = _InputWatcher(self)
        QApplication.instance().installEventFilter(self._watcher)
        self._idle_timer = QTimer(self)
        self._idle_timer.setInterval(min(1000, max(50, int(ctx.ui_cfg.idle_signout_min * 60_000 / 10))))
        self._idle_timer.timeout.connect(self._check_idle)
        self._idle_timer.start()
        self._notice_timer = QTimer(self)
        self._notice_timer.setSingleShot(True)
        self._notice_timer.timeout.connect(self._clear_notice)
        self.show_entry_screen()

    # --- the page registry ----------------------------------------------------------------
    def register_page(self, title: str, factory: Callable[[UiContext], QWidget], permission: str,
                      key: str | None = None) -> None:
        """Add a page (shown from the next sign-in on, to roles with ``permission``)."""
        self._specs.append(PageSpec(title, factory, permission, key or title.lower()))
        if self.ctx.session is not None:
            self._build_pages()

    @property
    def pages(self) -> dict[str, QWidget]:
        """The pages built for the signed-in person, by key."""
        return dict(self._pages)

    def show_page(self, key: str) -> bool:
        """Switch to a page; False (and an audited refusal) if the role may not see it."""
        page = self._pages.get(key)
        if page is None:
            spec = next((s for s in self._specs if s.key == key), None)
            if spec is not None and self.ctx.session is not None:
                try:
                    self.ctx.require(spec.permission, f"open the {spec.title} page")
                except PermissionDenied:
                    pass
            return False
        self.tabs.setCurrentWidget(page)
        return True

    # --- screens --------------------------------------------------------------------------
    def _build_station_view(self) -> None:
        top = QHBoxLayout()
        top.setContentsMargins(16, 8, 16, 8)
        st = self.ctx.runtime.cfg.station
        self.station_label = QLabel(f"{st.station}  ·  {st.line}")
        self.station_label.setObjectName("topTitle")
        self.user_label = QLabel("")
        self.user_label.setObjectName("topUser")
        self.notice_label = QLabel("")
        self.notice_label.setObjectName("notice")
        self.notice_label.setWordWrap(True)
        self.sign_out_button = QPushButton("Sign out")
        self.sign_out_button.setObjectName("signOut")
        self.sign_out_button.clicked.connect(lambda: self.sign_out("manual"))
        top.addWidget(self.station_label)
        top.addSpacing(24)
        top.addWidget(self.notice_label, 1)
        top.addWidget(self.user_label)
        top.addSpacing(12)
        top.addWidget(self.sign_out_button)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        lay = QVBoxLayout(self._station)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addLayout(top)
        lay.addWidget(self.tabs, 1)

    def show_entry_screen(self) -> None:
        if self.ctx.users.needs_first_admin():
            self._stack.setCurrentWidget(self.first_run)
        else:
            self.sign_in_screen.reset()
            self._stack.setCurrentWidget(self.sign_in_screen)

    def _signed_in(self, session: Session) -> None:
        self.ctx.session = session
        self._watcher.last_input = time.monotonic()
        self.user_label.setText(f"{session.user.shown_name}  ({session.role})")
        self._build_pages()
        self._stack.setCurrentWidget(self._station)
        self.ctx.events.session_changed.emit(session)

    def _build_pages(self) -> None:
        self._destroy_pages()
        for spec in self._specs:
            if not self.ctx.can(spec.permission):
                continue
            try:
                page = spec.factory(self.ctx)
            except Exception as exc:  # noqa: BLE001 - one broken page must not lock the station
                log.exception("page %s failed to open", spec.key)
                self.ctx.notifier.error(f"The {spec.title} page cannot open", exc)
                continue
            page.setObjectName(f"page_{spec.key}")
            self._pages[spec.key] = page
            self.tabs.addTab(page, spec.title)
        self.tabs.setCurrentIndex(0)

    def _destroy_pages(self) -> None:
        for page in self._pages.values():
            closer = getattr(page, "close_page", None)
            if closer is not None:
                try:
                    closer()
                except Exception:  # noqa: BLE001
                    log.exception("closing a page failed")
        self.tabs.clear()
        for page in self._pages.values():
            page.setParent(None)
            page.deleteLater()
        self._pages.clear()

    def sign_out(self, reason: str = "manual") -> None:
        """Back to the sign-in screen; the line keeps running (production does not stop)."""
        session = self.ctx.session
        if session is None:
            return
        self._destroy_pages()
        self.ctx.session = None
        self.user_label.setText("")
        try:
            self.ctx.users.sign_out(session, reason)
        except Exception as exc:  # noqa: BLE001
            self.ctx.notifier.error("Sign-out could not be recorded", exc)
        self.ctx.events.session_changed.emit(None)
        if not self._closed:
            self.show_entry_screen()

    def _check_idle(self) -> None:
        if self.ctx.session is None:
            return
        idle_s = time.monotonic() - self._watcher.last_input
        if idle_s >= self.ctx.ui_cfg.idle_signout_min * 60.0:
            self.sign_out("idle")
            self.ctx.notifier.info("Signed out after being idle")

    def _show_notice(self, notice: Notice) -> None:
        self.notice_label.setText(notice.text)
        self.notice_label.setStyleSheet(NOTICE_STYLE[notice.level])
        # the strip is for what is happening now; the log and the audit keep the history
        self._notice_timer.start(NOTICE_SHOWN_MS[notice.level])

    def _clear_notice(self) -> None:
        self.notice_label.setText("")
        self.notice_label.setStyleSheet(NOTICE_STYLE["info"])

    # --- closing --------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Sign out, stop the line thread, timers and background tasks (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._idle_timer.stop()
        self._notice_timer.stop()
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self._watcher)
        self.sign_out("closed")
        self.health_bar.close_page()
        try:
            self.ctx.notifier.posted.disconnect(self._show_notice)
        except (RuntimeError, TypeError):
            pass
        self.ctx.close()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt API
        self.shutdown()
        super().closeEvent(event)
        self.closed.emit()
