"""Colours, sizes and the stylesheet: calm, high contrast, readable from two metres.

Verdict colours come from the Okabe-Ito palette (distinguishable with the common colour
vision deficiencies); every verdict is told apart by its word and its icon shape as well,
so colour is never the only cue.
"""
from __future__ import annotations

from dataclasses import dataclass

BG = "#1b1e23"
PANEL = "#262a31"
PANEL_EDGE = "#3a3f48"
TEXT = "#f2f2f2"
MUTED = "#a9b0bb"


@dataclass(frozen=True)
class VerdictStyle:
    text: str  # the word on the banner
    shape: str  # circle / octagon / diamond / triangle / square (the icon's outline)
    mark: str  # what is drawn inside the shape: check / cross / question / bang / dash
    bg: str
    fg: str
    hint: str  # what the operator does


VERDICTS: dict[str, VerdictStyle] = {
    "pass": VerdictStyle("PASS", "circle", "check", "#009E73", "#ffffff", "part is good"),
    "reject": VerdictStyle("DEFECT", "octagon", "cross", "#D55E00", "#ffffff", "reject the part"),
    "review": VerdictStyle("REVIEW", "diamond", "question", "#F0E442", "#111111", "hold for the supervisor"),
    "check_capture": VerdictStyle("CHECK CAPTURE", "triangle", "bang", "#56B4E9", "#111111",
                                  "check the part and the light"),
    "idle": VerdictStyle("READY", "square", "dash", "#3a3f48", "#f2f2f2", "waiting for the first part"),
}

NOTICE_STYLE = {
    "info": f"color: {TEXT}; background: transparent; font-size: 20px;",
    "warning": "color: #111111; background: #F0E442; font-size: 20px; padding: 4px 10px; border-radius: 6px;",
    "error": "color: #ffffff; background: #D55E00; font-size: 20px; padding: 4px 10px; border-radius: 6px;",
    "alarm": "color: #ffffff; background: #D55E00; font-size: 22px; font-weight: bold; "
             "padding: 4px 10px; border-radius: 6px;",
}

STATE_OK, STATE_WARN, STATE_BAD = "#009E73", "#E69F00", "#D55E00"

STYLESHEET = f"""
QWidget {{ background: {BG}; color: {TEXT}; font-size: 20px; }}
QTabBar::tab {{ background: {PANEL}; color: {MUTED}; padding: 12px 28px; font-size: 22px;
               border: 1px solid {PANEL_EDGE}; border-bottom: none; margin-right: 4px; }}
QTabBar::tab:selected {{ color: {TEXT}; background: {BG}; font-weight: bold; }}
QTabWidget::pane {{ border-top: 1px solid {PANEL_EDGE}; }}
QPushButton {{ background: #3d4450; color: {TEXT}; border: 1px solid #56606e; border-radius: 8px;
               padding: 10px 22px; font-size: 22px; min-height: 44px; }}
QPushButton:pressed {{ background: #56606e; }}
QPushButton:disabled {{ color: #6b7280; background: #2b2f36; border-color: #3a3f48; }}
QPushButton#startButton {{ background: #00734f; border-color: #009E73; font-weight: bold; }}
QPushButton#stopButton {{ background: #8a3b00; border-color: #D55E00; font-weight: bold; }}
QPushButton#startButton:disabled, QPushButton#stopButton:disabled {{ background: #2b2f36; color: #6b7280;
               border-color: #3a3f48; }}
QPushButton:checked {{ background: #0072B2; border-color: #56B4E9; }}
QLineEdit {{ background: #101215; border: 2px solid #56606e; border-radius: 8px; padding: 8px 12px;
             font-size: 30px; min-height: 52px; }}
QLineEdit:focus {{ border-color: #56B4E9; }}
QComboBox {{ background: #101215; border: 2px solid #56606e; border-radius: 8px; padding: 6px 12px;
             font-size: 24px; min-height: 40px; }}
QLabel#topTitle {{ font-size: 26px; font-weight: bold; }}
QLabel#topUser {{ font-size: 22px; color: {MUTED}; }}
QLabel#muted {{ color: {MUTED}; }}
QFrame#panel {{ background: {PANEL}; border: 1px solid {PANEL_EDGE}; border-radius: 10px; }}
QFrame#panel QLabel {{ background: transparent; }}
QLabel#panelTitle {{ color: {MUTED}; font-size: 18px; font-weight: bold; }}
QLabel#bigValue {{ font-size: 34px; font-weight: bold; }}
QLabel#error {{ color: #ffffff; background: #D55E00; padding: 8px 14px; border-radius: 6px; font-size: 24px; }}
QStatusBar {{ background: #111317; border-top: 1px solid {PANEL_EDGE}; }}
QStatusBar QLabel {{ background: transparent; font-size: 18px; }}
QProgressDialog QLabel {{ font-size: 20px; }}
QTableWidget {{ background: {PANEL}; gridline-color: {PANEL_EDGE}; font-size: 20px; }}
QHeaderView::section {{ background: {PANEL}; color: {MUTED}; padding: 6px; border: none; font-size: 18px; }}
"""
