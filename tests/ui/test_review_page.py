"""The supervisor review tab, driven with the keyboard on a real station (pytest-qt, offscreen)."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from review_fixtures import inspect_parts, partb_ctx, partb_station, partb_template, wait_idle  # noqa: F401
from station.review_labels import labels_of
from station.ui.review import QtReviewPage
from station.ui.review_queue import review_queue


def _open(qtbot, partb, ctx) -> QtReviewPage:
    page = partb.open(QtReviewPage, ctx)
    qtbot.waitUntil(lambda: page.detail is not None, timeout=20_000)
    return page


def _outbox_labels(store) -> list[dict]:
    from sqlalchemy import select

    from station.store.schema import OutboxRow
    with store.reader.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            select(*OutboxRow.__table__.c).where(OutboxRow.kind == "label").order_by(OutboxRow.id))]


def test_supervisor_reviews_the_queue_with_the_keyboard(qtbot, partb_station, partb_ctx):
    rt = partb_station(camera={"defect_rate": 1.0})
    outcomes = inspect_parts(rt, 8)
    queued = review_queue(rt.store)
    assert len(queued) >= 3, [o.decision.value for o in outcomes]
    ctx = partb_ctx(rt, "supervisor")
    page = _open(qtbot, partb_ctx, ctx)

    # oldest first, the oldest selected, with its image, heatmap and numbers
    assert [it.inspection_id for it in page.items] == [it.inspection_id for it in queued]
    first = queued[0].inspection_id
    assert page.detail.item.inspection_id == first
    assert page.detail.image is not None and page.detail.heatmap is not None
    assert page.picture.has_image
    assert "Score / threshold" in page.facts.text() and f"{page.detail.threshold:.3g}" in page.facts.text()
    assert page.spec_table.rowCount() == len(page.detail.spec_checks) > 0

    # 2 = "spot", D confirms: label row, audit entry, outbox row; the item leaves the queue
    qtbot.keyClick(page, Qt.Key.Key_2)
    assert page.defect_class == "spot"
    qtbot.keyClick(page, Qt.Key.Key_D)
    qtbot.waitUntil(lambda: labels_of(rt.store, first) != [], timeout=10_000)
    wait_idle(qtbot, ctx)
    label = labels_of(rt.store, first)[0]
    assert (label["label"], label["defect_class"], label["username"]) == ("defect", "spot", ctx.session.username)
    audit = [e for e in rt.store.audit_entries(subject=first) if e["action"] == "review.label"]
    assert audit and audit[0]["actor"] == ctx.session.username
    rows = _outbox_labels(rt.store)
    assert rows[0]["idempotency_key"] == f"{first}:s3:label:{label['id']}" and rows[0]["priority"] == 2
    assert first not in [it.inspection_id for it in page.items]
    qtbot.waitUntil(lambda: page.detail is not None and page.detail.item.inspection_id == queued[1].inspection_id,
                    timeout=10_000)

    # G marks the next one good, R sends the one after to recapture
    qtbot.keyClick(page, Qt.Key.Key_G)
    qtbot.waitUntil(lambda: labels_of(rt.store, queued[1].inspection_id) != [], timeout=10_000)
    qtbot.waitUntil(lambda: page.detail is not None and page.detail.item.inspection_id == queued[2].inspection_id,
                    timeout=10_000)
    qtbot.keyClick(page, Qt.Key.Key_R)
    qtbot.waitUntil(lambda: labels_of(rt.store, queued[2].inspection_id) != [], timeout=10_000)
    wait_idle(qtbot, ctx)
    assert labels_of(rt.store, queued[1].inspection_id)[0]["label"] == "good"
    assert labels_of(rt.store, queued[2].inspection_id)[0]["label"] == "recapture"
    assert [it.inspection_id for it in review_queue(rt.store)] == [it.inspection_id for it in queued[3:]]
    assert rt.store.audit_verify().ok

    # H toggles the heatmap off the picture (the painted image changes)
    pics = page.detail.pictures
    assert not np.array_equal(pics[True], pics[False])  # the heatmap is drawn on the part
    shown = page.picture._image.copy()
    qtbot.keyClick(page, Qt.Key.Key_H)
    assert not page.heatmap_box.isChecked() and page.picture._image != shown
    page.close_page()


def test_confirm_without_a_class_asks_for_one_and_writes_nothing(qtbot, partb_station, partb_ctx):
    rt = partb_station(camera={"defect_rate": 1.0})
    inspect_parts(rt, 3)
    ctx = partb_ctx(rt, "supervisor")
    page = _open(qtbot, partb_ctx, ctx)
    iid = page.detail.item.inspection_id
    qtbot.keyClick(page, Qt.Key.Key_D)
    wait_idle(qtbot, ctx)
    assert "Choose the defect class" in page.status.text()
    assert labels_of(rt.store, iid) == []
    page.close_page()


def test_operator_is_refused_the_review_tab_and_its_decisions(qtbot, partb_station, partb_ctx):
    from station.ui.main_window import QtMainWindow
    from station.ui.pages import PAGES

    rt = partb_station(camera={"defect_rate": 1.0})
    inspect_parts(rt, 3)
    ctx = partb_ctx(rt, "operator")
    assert any(spec.key == "review" for spec in PAGES)
    win = QtMainWindow(ctx)
    partb_ctx.pages.append(win)
    win.sign_in_screen.signed_in.emit(ctx.session)
    assert "review" not in win.pages and "health" in win.pages
    assert not win.show_page("review")

    # even a page built by hand refuses: nothing written, the refusal audited and shown
    page = _open(qtbot, partb_ctx, ctx)
    iid = page.detail.item.inspection_id
    assert not page.good_btn.isEnabled()
    qtbot.keyClick(page, Qt.Key.Key_G)
    wait_idle(qtbot, ctx)
    assert labels_of(rt.store, iid) == []
    refusals = [e for e in rt.store.audit_entries() if e["action"] == "user.refused"]
    assert refusals and refusals[-1]["payload"]["permission"] == "review"
    assert any("Not allowed for operator" in n.text for n in ctx.notifier.history)
    page.close_page()
    win.shutdown()


def test_admin_window_builds_all_part_b_pages_and_sign_out_frees_them(qtbot, partb_station, partb_ctx):
    from station.ui.main_window import QtMainWindow

    rt = partb_station(camera={"defect_rate": 1.0})
    inspect_parts(rt, 2)
    ctx = partb_ctx(rt, "admin")
    win = QtMainWindow(ctx)
    partb_ctx.pages.append(win)
    win.resize(1600, 1000)
    win.show()
    win.sign_in_screen.signed_in.emit(ctx.session)
    for key in ("review", "charts", "calibration", "models"):
        assert key in win.pages, ctx.notifier.history
        assert win.show_page(key)
        qtbot.wait(50)
    wait_idle(qtbot, ctx)
    win.sign_out()  # pages closed (close_page) and deleted; the fixture checks for leaks
    assert win.pages == {}
