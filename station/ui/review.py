"""The supervisor's review tab: the queue of review and reject results, oldest first.

For the selected item: the stored image with its heatmap, score against threshold,
confidence, the capture-spec values; and three decisions, each on a key:

- ``1``..``9`` choose the defect class, ``D`` confirms the defect with it;
- ``G`` marks the part good; ``R`` sends it to recapture; ``H`` toggles the heatmap.

A stored 16-bit image (X-ray) is shown through the same window / level control as the
operator's live view (the item's recipe presets, drag on the picture, Auto, Reset).

Every decision is written by :func:`station.review_labels.record_review_label` on the task
runner's write queue (label row + audit entry + outbox row, one commit); the item leaves
the queue once the write committed. Deciding needs the ``review`` permission, checked
again at every key press (the session may have timed out since the page opened).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QHideEvent, QKeySequence, QShortcut, QShowEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from station.display_window import FORMAT_TOP, GreyWindow, apply_window
from station.review_labels import AlreadyLabelled, ReviewAction, record_review_label
from station.ui.line_view import display_presets, recipe_grey_window
from station.ui.review_image import QtPictureView, scaled_font
from station.ui.review_queue import ReviewDetail, ReviewItem, display_rgb, load_for_display, review_queue
from station.ui.window_level_widget import QtWindowLevelBar, WindowLevelMouse
from station.users import PermissionDenied

PERMISSION = "review"
REFRESH_MS = 5000
DECISION_TEXT = {"review": "REVIEW", "reject": "DEFECT", "check_capture": "CHECK CAPTURE", "pass": "PASS"}


def _fmt(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def item_text(it: ReviewItem) -> str:
    local = it.started_at.astimezone().strftime("%H:%M:%S") if it.started_at.tzinfo else "?"
    score = f"   score {it.score:.3g}" if it.score is not None else ""
    return f"{DECISION_TEXT.get(it.decision, it.decision)}   {local}\n{it.part_id or '?'}{score}"


class QtReviewPage(QWidget):
    """The review queue and its decisions. ``ctx`` is the :class:`~station.ui.context.UiContext`."""

    labelled = Signal(object)  # RecordedLabel, after the commit

    def __init__(self, ctx: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        review_cfg = ctx.runtime.cfg.review
        self.defect_classes = review_cfg.classes_for(ctx.runtime.cfg.recipe.name)
        self.items: list[ReviewItem] = []
        self.detail: ReviewDetail | None = None
        self.defect_class: str | None = None
        self._busy = False
        self._closed = False
        self._loading: str | None = None

        self.queue_title = QLabel("Review queue")
        self.queue_title.setObjectName("reviewQueueTitle")
        self.include_faults = QCheckBox("include check capture")
        self.include_faults.setChecked(review_cfg.include_check_capture)
        self.include_faults.toggled.connect(self.refresh)
        self.queue = QListWidget()
        self.queue.setObjectName("reviewQueue")
        self.queue.currentRowChanged.connect(self._on_row)
        self.queue.setMinimumWidth(300)
        self.queue.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.queue.setWordWrap(True)
        self.queue.setSpacing(3)

        self.picture = QtPictureView()
        self.heatmap_box = QCheckBox("Heatmap (H)")
        self.heatmap_box.setChecked(True)
        self.heatmap_box.toggled.connect(self._show_picture)
        self.window_level = QtWindowLevelBar(display_presets(ctx.runtime.cfg), self._stored_image,
                                             grey_window=recipe_grey_window(ctx.runtime.cfg))
        self.window_level.window_changed.connect(self._show_picture)
        self._wl_mouse = WindowLevelMouse(self.picture, self.window_level)

        self.facts = QLabel("Nothing selected")
        self.facts.setObjectName("reviewFacts")
        self.facts.setTextFormat(Qt.TextFormat.RichText)
        self.facts.setWordWrap(True)
        self.spec_table = QTableWidget(0, 3)
        self.spec_table.setHorizontalHeaderLabels(["check", "value", "limits"])
        self.spec_table.verticalHeader().setVisible(False)
        self.spec_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.spec_table.horizontalHeader().setStretchLastSection(True)

        self.class_group = QButtonGroup(self)
        self.class_group.setExclusive(True)
        class_row = QGridLayout()
        for i, name in enumerate(self.defect_classes):
            b = QPushButton(f"{i + 1}  {name.replace('_', ' ')}")
            b.setCheckable(True)
            b.setProperty("defectClass", name)
            self.class_group.addButton(b, i)
            class_row.addWidget(b, i // 3, i % 3)
        self.class_group.idClicked.connect(lambda i: self.choose_class(self.defect_classes[i]))

        self.defect_btn = self._action_button("D  Confirm defect", "#b71c1c", self.confirm_defect)
        self.good_btn = self._action_button("G  Mark good", "#1b5e20", self.mark_good)
        self.recapture_btn = self._action_button("R  Recapture", "#e65100", self.recapture)
        self.status = QLabel("")
        self.status.setObjectName("reviewStatus")
        self.status.setWordWrap(True)

        left = QVBoxLayout()
        left.addWidget(self.queue_title)
        left.addWidget(self.include_faults)
        left.addWidget(self.queue, 1)
        centre = QVBoxLayout()
        centre.addWidget(self.picture, 1)
        centre.addWidget(self.window_level)
        centre.addWidget(self.heatmap_box)
        right = QVBoxLayout()
        right.addWidget(self.facts)
        right.addWidget(self.spec_table, 1)
        right.addWidget(QLabel("Defect class (keys 1-%d)" % len(self.defect_classes)))
        right.addLayout(class_row)
        actions = QHBoxLayout()
        for b in (self.defect_btn, self.good_btn, self.recapture_btn):
            actions.addWidget(b)
        right.addLayout(actions)
        right.addWidget(self.status)
        root = QHBoxLayout(self)
        root.addLayout(left, 2)
        root.addLayout(centre, 5)
        root.addLayout(right, 3)

        keys = {"D": self.confirm_defect, "G": self.mark_good, "R": self.recapture,
                "H": self.heatmap_box.toggle}
        for i, name in enumerate(self.defect_classes):
            keys[str(i + 1)] = (lambda n=name: self.choose_class(n))
        self._shortcuts = []
        for key, fn in keys.items():
            sc = QShortcut(QKeySequence(key), self)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            sc.activated.connect(fn)
            self._shortcuts.append(sc)

        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        self._update_enabled()
        self.refresh()

    # --- building ------------------------------------------------------------------
    def _action_button(self, text: str, colour: str, slot) -> QPushButton:
        b = QPushButton(text)
        b.setMinimumHeight(64)
        f = scaled_font(b.font(), 1.3)
        f.setBold(True)
        b.setFont(f)
        b.setStyleSheet(f"QPushButton {{ background: {colour}; color: white; border-radius: 6px; padding: 6px; }}"
                        "QPushButton:disabled { background: #555; color: #aaa; }")
        b.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        b.clicked.connect(slot)
        return b

    def close_page(self) -> None:
        """Stop polling and ignore results still on their way (the page is going away)."""
        self._closed = True
        self._timer.stop()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if self._closed:
            return
        self._timer.start()  # only poll the database while someone looks at the queue
        self.refresh()

    def hideEvent(self, event: QHideEvent) -> None:  # noqa: N802 - Qt API
        self._timer.stop()
        super().hideEvent(event)

    # --- queue ---------------------------------------------------------------------
    def refresh(self) -> None:
        """Reload the queue in the background; keeps the selection when it is still queued."""
        if self._closed or self._busy:
            return
        store = self.ctx.runtime.store
        include = self.include_faults.isChecked()
        self.ctx.tasks.run(lambda _c: review_queue(store, include_check_capture=include),
                           self._set_items, label="load review queue")

    def _set_items(self, items: list[ReviewItem]) -> None:
        if self._closed:
            return
        if [it.inspection_id for it in items] == [it.inspection_id for it in self.items] and self.detail is not None:
            return  # nothing changed: do not rebuild the list under the supervisor's eyes
        current = self.current_id
        self.items = items
        self.queue.blockSignals(True)
        self.queue.clear()
        row = 0
        for i, it in enumerate(items):
            li = QListWidgetItem(item_text(it))
            li.setData(Qt.ItemDataRole.UserRole, it.inspection_id)
            self.queue.addItem(li)
            if it.inspection_id == current:
                row = i
        self.queue.blockSignals(False)
        self.queue_title.setText(f"Review queue: {len(items)} waiting" if items else "Review queue: empty")
        if items:
            self.queue.setCurrentRow(row)
            if items[row].inspection_id != (self.detail.item.inspection_id if self.detail else None):
                self._on_row(row)
        else:
            self._set_detail(None)

    @property
    def current_id(self) -> str | None:
        li = self.queue.currentItem()
        return li.data(Qt.ItemDataRole.UserRole) if li is not None else None

    def _on_row(self, row: int) -> None:
        if not 0 <= row < len(self.items):
            return
        iid = self.items[row].inspection_id
        self._loading = iid
        store = self.ctx.runtime.store
        self.ctx.tasks.run(lambda _c: load_for_display(store, iid), self._detail_loaded,
                           lambda exc: self._detail_failed(iid, exc), label="load review item")

    def _detail_loaded(self, detail: ReviewDetail) -> None:
        if not self._closed and detail.item.inspection_id == self._loading:
            self._set_detail(detail)

    def _detail_failed(self, iid: str, exc: BaseException) -> None:
        self.ctx.notifier.error(f"cannot show inspection {iid}", exc)

    # --- detail --------------------------------------------------------------------
    def _set_detail(self, detail: ReviewDetail | None) -> None:
        self.detail = detail
        self.choose_class(None)
        if detail is None:
            self.facts.setText("<b>Nothing to review.</b>")
            self.spec_table.setRowCount(0)
            self.picture.set_rgb(None, "The queue is empty")
            self.window_level.deactivate()
            self._update_enabled()
            return
        it, doc = detail.item, detail.document
        det = doc.get("detection") or {}
        lfv = det.get("DetectAnomalyResult") or {}
        area = next((a["PixelAnomaly"]["TotalPercentageArea"] for a in lfv.get("Anomalies", [])
                     if a.get("Name") != "background"), None)
        rows = [
            ("Part", f"{it.part_id}  (lot {it.lot})"),
            ("Recipe", it.recipe),
            ("Decision", DECISION_TEXT.get(it.decision, it.decision)),
            ("Score / threshold", f"{_fmt(doc.get('score'))} / {_fmt(detail.threshold)}"),
            ("Confidence", _fmt(doc.get("confidence"), 2)),
            ("Anomalous area", "-" if area is None else f"{100 * area:.2f} %"),
            ("Model", f"{doc.get('model_id') or '-'} v{doc.get('model_version') or '-'}"),
            ("Reason", detail.reason or "-"),
        ]
        html = "".join(f"<tr><td style='padding-right:12px;color:#888'>{k}</td><td><b>{v}</b></td></tr>"
                       for k, v in rows)
        self.facts.setText(f"<table>{html}</table>")
        self.spec_table.setRowCount(len(detail.spec_checks))
        for r, c in enumerate(detail.spec_checks):
            lo, hi = c.get("low"), c.get("high")
            limits = f"{_fmt(lo)} .. {_fmt(hi)}" if lo is not None and hi is not None else (
                f">= {_fmt(lo)}" if lo is not None else f"<= {_fmt(hi)}" if hi is not None else "")
            cells = [c["name"] + ("" if c.get("passed") else "  FAIL"), _fmt(c.get("value")), limits]
            for col, text in enumerate(cells):
                self.spec_table.setItem(r, col, QTableWidgetItem(text))
        self.spec_table.resizeColumnsToContents()
        self._follow_bit_depth(detail)
        self._show_picture()
        self._update_enabled()

    def _stored_image(self):
        d = self.detail
        return d.image if d is not None else None

    def _follow_bit_depth(self, d: ReviewDetail | None) -> None:
        """16-bit mono images get the window / level control (the item's recipe presets)."""
        img = d.image if d is not None else None
        if img is None or img.dtype != np.uint16 or img.ndim != 2:
            self.window_level.deactivate()
            return
        cfg = self.ctx.runtime.cfg
        self.window_level.set_presets(display_presets(cfg, d.item.recipe), recipe_grey_window(cfg, d.item.recipe))
        bits = (d.document.get("image") or {}).get("bit_depth")
        self.window_level.activate(FORMAT_TOP.get(f"Mono{bits}", 65535) if bits else 65535)

    def _show_picture(self, *_args) -> None:
        d = self.detail
        if d is None or d.image is None:
            why = d.image_error if d is not None and d.image_error else "No image (capture fault)"
            self.picture.set_rgb(None, why)
            return
        heat = self.heatmap_box.isChecked()
        w: GreyWindow | None = self.window_level.window if self.window_level.active else None
        if w is not None and d.image.dtype == np.uint16:  # made now: it follows every drag step
            self.picture.set_rgb(display_rgb(apply_window(d.image, w), None, d.heatmap if heat else None))
            return
        self.picture.set_rgb(d.pictures.get(heat))

    # --- decisions -----------------------------------------------------------------
    def choose_class(self, name: str | None) -> None:
        """Select the defect class ``D`` will confirm (None clears it)."""
        self.defect_class = name
        for b in self.class_group.buttons():
            b.setChecked(b.property("defectClass") == name)
        if name is not None:
            self.status.setText(f"Defect class: {name.replace('_', ' ')}. Press D to confirm.")
        self._update_enabled()

    def _update_enabled(self) -> None:
        ready = self.detail is not None and not self._busy and self.ctx.can(PERMISSION)
        self.good_btn.setEnabled(ready)
        self.recapture_btn.setEnabled(ready)
        self.defect_btn.setEnabled(ready)
        for b in self.class_group.buttons():
            b.setEnabled(ready)

    def confirm_defect(self) -> None:
        if self.detail is not None and self.defect_class is None:
            self.status.setText(f"Choose the defect class first (keys 1-{len(self.defect_classes)}).")
            return
        self._decide(ReviewAction.CONFIRM_DEFECT, self.defect_class)

    def mark_good(self) -> None:
        self._decide(ReviewAction.MARK_GOOD, None)

    def recapture(self) -> None:
        self._decide(ReviewAction.RECAPTURE, None)

    def _decide(self, action: ReviewAction, defect_class: str | None) -> None:
        if self.detail is None or self._busy:
            return
        try:
            session = self.ctx.require(PERMISSION, f"review {action.value.replace('_', ' ')}")
        except PermissionDenied:  # refused, audited and told by ctx.require
            self._update_enabled()
            return
        iid = self.detail.item.inspection_id
        store = self.ctx.runtime.store
        classes = tuple(self.defect_classes)
        username = session.username
        self._busy = True
        self._update_enabled()
        self.status.setText("Saving ...")
        self.ctx.tasks.run(
            lambda _c: record_review_label(store, iid, action, username=username, defect_class=defect_class,
                                           allowed_classes=classes),
            self._decided, self._decide_failed, label=f"review {iid}", write=True)

    def _decided(self, recorded) -> None:
        self._busy = False
        if self._closed:  # committed all the same; the page is gone
            return
        self.labelled.emit(recorded)
        what = recorded.label + (f" ({recorded.defect_class})" if recorded.defect_class else "")
        self.status.setText(f"Saved: {self.detail.item.part_id if self.detail else recorded.inspection_id} "
                            f"labelled {what}.")
        self._drop(recorded.inspection_id)

    def _decide_failed(self, exc: BaseException) -> None:
        self._busy = False
        if self._closed:
            self.ctx.notifier.error("review decision not saved", exc)
            return
        if isinstance(exc, AlreadyLabelled):
            self.ctx.notifier.warning(str(exc))
            if self.detail is not None:
                self._drop(self.detail.item.inspection_id)
            return
        self.status.setText(f"Not saved: {exc}")
        self.ctx.notifier.error("review decision not saved", exc)
        self._update_enabled()

    def _drop(self, iid: str) -> None:
        """Take a decided item off the list and move on to the next oldest."""
        idx = next((i for i, it in enumerate(self.items) if it.inspection_id == iid), None)
        if idx is None:
            self._update_enabled()
            return
        del self.items[idx]
        self.detail = None  # no second decision on the decided item while the next one loads
        self.queue.blockSignals(True)
        self.queue.takeItem(idx)
        self.queue.blockSignals(False)
        self.queue_title.setText(f"Review queue: {len(self.items)} waiting" if self.items else "Review queue: empty")
        if self.items:
            row = min(idx, len(self.items) - 1)
            self.queue.setCurrentRow(row)
            self._on_row(row)
        else:
            self._set_detail(None)
        self._update_enabled()
