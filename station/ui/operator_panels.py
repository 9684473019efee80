"""The read-only panels beside the live image: part, shift counters, capture spec, sync.

Nothing here changes a setting; each panel only shows what it is given.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QVBoxLayout

from station.ui.station_status import SyncState, human_age
from station.ui.theme import MUTED, STATE_BAD, STATE_OK, STATE_WARN

SPEC_ORDER = ("brightness", "clipping", "contrast", "focus", "position", "rotation", "noise")


def _fmt(v: float | None) -> str:
    if v is None:
        return ""
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def limits_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{_fmt(low)} .. {_fmt(high)}"
    if low is not None:
        return f"≥ {_fmt(low)}"
    if high is not None:
        return f"≤ {_fmt(high)}"
    return ""


class _Panel(QFrame):
    def __init__(self, title: str) -> None:
        super().__init__()
        self.setObjectName("panel")
        self.box = QVBoxLayout(self)
        self.box.setContentsMargins(16, 10, 16, 12)
        self.box.setSpacing(4)
        t = QLabel(title.upper())
        t.setObjectName("panelTitle")
        self.box.addWidget(t)


class QtPartPanel(_Panel):
    """Part id (large), lot, recipe, and why the verdict is what it is."""

    def __init__(self) -> None:
        super().__init__("Part")
        self.part = QLabel("-")
        self.part.setObjectName("bigValue")
        self.part.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.meta = QLabel("lot -   recipe -")
        self.reason = QLabel("")
        self.reason.setWordWrap(True)
        self.reason.setStyleSheet(f"color: {MUTED}; font-size: 18px;")
        for w in (self.part, self.meta, self.reason):
            self.box.addWidget(w)

    def show_part(self, part_id: str, lot: str, recipe: str, reason: str = "", score: str = "") -> None:
        self.part.setText(part_id or "-")
        self.meta.setText(f"lot {lot or '-'}    recipe {recipe or '-'}")
        self.reason.setText("  ".join(x for x in (score, reason) if x))


class QtCountersPanel(_Panel):
    """This shift's counts per verdict and the yield (pass / decided)."""

    KEYS = (("pass", "PASS"), ("reject", "DEFECT"), ("review", "REVIEW"), ("check_capture", "CHECK"))

    def __init__(self) -> None:
        super().__init__("This shift")
        grid = QGridLayout()
        grid.setHorizontalSpacing(18)
        self.values: dict[str, QLabel] = {}
        for col, (key, title) in enumerate(self.KEYS + (("yield", "YIELD"),)):
            t = QLabel(title)
            t.setStyleSheet(f"color: {MUTED}; font-size: 16px;")
            v = QLabel("0")
            v.setStyleSheet("font-size: 30px; font-weight: bold;")
            grid.addWidget(t, 0, col)
            grid.addWidget(v, 1, col)
            self.values[key] = v
        self.box.addLayout(grid)
        self.counts: dict[str, int] = {}

    def set_counts(self, counts: dict[str, int]) -> None:
        self.counts = {k: int(counts.get(k, 0)) for k, _ in self.KEYS}
        self._render()

    def add(self, decision: str) -> None:
        self.counts[decision] = self.counts.get(decision, 0) + 1
        self._render()

    @property
    def yield_pct(self) -> float | None:
        decided = self.counts.get("pass", 0) + self.counts.get("reject", 0)
        return 100.0 * self.counts.get("pass", 0) / decided if decided else None

    def _render(self) -> None:
        for key, _ in self.KEYS:
            self.values[key].setText(str(self.counts.get(key, 0)))
        y = self.yield_pct
        self.values["yield"].setText("-" if y is None else f"{y:.1f}%")


class QtSpecPanel(_Panel):
    """The capture-spec checks of the latest frame: value against limits.

    Camera recipes have seven checks, X-ray recipes others (grey level, SNR, saturation,
    underexposed, position, rotation): the rows follow the checks the frame was given.
    """

    def __init__(self) -> None:
        super().__init__("Capture spec")
        self.grid = QGridLayout()
        self.grid.setHorizontalSpacing(14)
        self.grid.setVerticalSpacing(2)
        self.rows: dict[str, tuple[QLabel, QLabel, QLabel, QLabel]] = {}
        self.box.addLayout(self.grid)
        self.failed: list[str] = []
        self._state: dict[str, bool | None] = {}
        self._set_rows(SPEC_ORDER)

    def _set_rows(self, names: tuple[str, ...] | list[str]) -> None:
        for labels in self.rows.values():
            for w in labels:
                self.grid.removeWidget(w)
                w.deleteLater()
        self.rows, self._state = {}, {}
        for r, name in enumerate(names):
            mark, n, val, lim = QLabel("·"), QLabel(name.replace("_", " ")), QLabel(""), QLabel("")
            mark.setFixedWidth(70)
            lim.setStyleSheet(f"color: {MUTED};")
            for c, w in enumerate((mark, n, val, lim)):
                self.grid.addWidget(w, r, c)
            self.rows[name] = (mark, n, val, lim)

    def show_checks(self, checks: list[dict[str, Any]]) -> None:
        by_name = {c["name"]: c for c in checks}
        if checks and set(by_name) != set(self.rows):  # another kind of recipe: its own rows
            self._set_rows(list(by_name))
        self.failed = [c["name"] for c in checks if not c.get("passed", True)]
        for name, (mark, _n, val, lim) in self.rows.items():
            c = by_name.get(name)
            ok = None if c is None else bool(c.get("passed", True))
            if self._state.get(name, "unset") != ok:  # re-style only on a change (style sheets are slow)
                self._state[name] = ok
                mark.setText("–" if ok is None else "✓ ok" if ok else "✗ OUT")
                colour = MUTED if ok is None else STATE_OK if ok else STATE_BAD
                mark.setStyleSheet(f"color: {colour}; font-weight: bold;")
            if c is None:
                val.setText("")
                lim.setText("")
                continue
            val.setText(_fmt(c.get("value")))
            lim.setText(limits_text(c.get("low"), c.get("high")))


class QtSyncPanel(_Panel):
    """Online / offline / queued locally, records waiting and the oldest one's age."""

    def __init__(self) -> None:
        super().__init__("Sync")
        self.headline = QLabel("-")
        self.headline.setStyleSheet("font-size: 26px; font-weight: bold;")
        self.detail = QLabel("")
        self.detail.setWordWrap(True)
        self.box.addWidget(self.headline)
        self.box.addWidget(self.detail)
        self.state: SyncState | None = None

    def show_sync(self, s: SyncState) -> None:
        self.state = s
        head = s.headline
        colour = {"online": STATE_OK, "degraded": STATE_WARN, "queued locally": STATE_WARN}.get(head, STATE_BAD)
        symbol = {"online": "●", "degraded": "◐", "queued locally": "◼"}.get(head, "○")
        self.headline.setText(f"<span style='color:{colour}'>{symbol}</span> {head.upper()}")
        self.detail.setText(f"{s.waiting} records waiting · oldest {human_age(s.oldest_age_s)}"
                            + (f" · {s.dead} refused" if s.dead else ""))
