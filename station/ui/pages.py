"""The station's pages, in tab order: ONE list to add a screen to.

Each entry names a tab title, a factory ``factory(ctx) -> QWidget`` (import inside the
factory, so a page's module loads only when someone allowed to see it signs in) and the
permission needed to see it (see :data:`station.users.PERMISSIONS`). Pages the signed-in
role may not see are never created.

A page widget may define ``close_page()``; the main window calls it before destroying the
page (sign-out, close) - stop timers and disconnect from ``ctx.events`` there.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtWidgets import QWidget

from station.ui.context import UiContext


@dataclass(frozen=True)
class PageSpec:
    title: str
    factory: Callable[[UiContext], QWidget]
    permission: str
    key: str


def _operator(ctx: UiContext) -> QWidget:
    from station.ui.operator_screen import QtOperatorScreen
    return QtOperatorScreen(ctx)


def _health(ctx: UiContext) -> QWidget:
    from station.ui.health import QtHealthPage
    return QtHealthPage(ctx)


def _optional(module: str, cls: str) -> Callable[[UiContext], QWidget]:
    def factory(ctx: UiContext) -> QWidget:
        import importlib
        return getattr(importlib.import_module(module), cls)(ctx)
    return factory


PAGES: list[PageSpec] = [
    PageSpec("Line", _operator, "view", "operator"),  # the default view
    # --- part B's pages go here (supervisor review, calibration wizard, models) ---------
    PageSpec("Review", _optional("station.ui.review", "QtReviewPage"), "review", "review"),
    PageSpec("Charts", _optional("station.ui.charts", "QtChartsPage"), "review", "charts"),
    PageSpec("Calibration", _optional("calibration.ui.wizard", "QtCalibrationWizard"), "calibrate", "calibration"),
    PageSpec("Models", _optional("station.ui.models_panel", "QtModelsPanel"), "models", "models"),
    # ---------------------------------------------------------------------------------
    PageSpec("Health", _health, "view", "health"),
    PageSpec("Accounts", _optional("station.ui.accounts", "QtAccountsPage"), "users", "accounts"),
]
