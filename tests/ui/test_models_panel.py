"""The model panel: dataset from the station's inspections, train, evaluate, gate, deploy, roll back."""
from __future__ import annotations

from PySide6.QtCore import Qt

from review_fixtures import inspect_parts, partb_ctx, partb_station, partb_template, wait_idle  # noqa: F401
from station.lifecycle.gate import check_gate
from station.review_labels import record_review_label
from station.ui.models_panel import QtModelsPanel, good_defect
from station.ui.review_queue import review_queue

T = 60_000
LAX_GATE = {"min_image_auroc": 0.0, "min_recall": 0.0, "max_false_reject_rate": 1.0, "max_regression": 1.0}


def _station(partb_station, **gate):
    rt = partb_station(camera={"defect_rate": 0.35, "seed": 21}, lifecycle={"gate": gate})
    inspect_parts(rt, 48)
    for i, item in enumerate(review_queue(rt.store)):  # a supervisor went through the queue
        if item.decision == "review":
            record_review_label(rt.store, item.inspection_id, "confirm_defect" if i % 2 else "mark_good",
                                username="sue", defect_class="spot" if i % 2 else None)
    return rt


def _open(partb, ctx) -> QtModelsPanel:
    return partb.open(QtModelsPanel, ctx)


def _click(qtbot, button) -> None:
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def _idle(qtbot, panel) -> None:
    qtbot.waitUntil(lambda: panel._task is None, timeout=T)


def _build_and_train(qtbot, panel) -> str:
    before = {m.model_id for m in panel.registry.list()}
    _click(qtbot, panel.build_btn)
    _idle(qtbot, panel)
    assert panel.dataset_table.rowCount() == 1, panel.status.text()
    assert "station@1 created" in panel.status.text()
    _click(qtbot, panel.train_btn)
    _idle(qtbot, panel)
    new = {m.model_id for m in panel.registry.list()} - before
    assert len(new) == 1, panel.status.text()
    model_id = new.pop()
    assert panel.selected_model == model_id and "Trained" in panel.status.text()
    return model_id


def test_technician_trains_evaluates_deploys_and_rolls_back(qtbot, partb_station, partb_ctx):
    rt = _station(partb_station, **LAX_GATE)
    ctx = partb_ctx(rt, "technician")
    panel = _open(partb_ctx, ctx)
    first_active = panel.registry.active()
    assert panel.model_table.rowCount() == 1  # the first-run model

    model_id = _build_and_train(qtbot, panel)
    info = panel.datasets.list()[0]
    good, defect = good_defect(info.counts)
    assert good > 10 and defect > 2
    assert panel.registry.info(model_id).meta["dataset"]["ref"] == "station@1"  # lineage

    _click(qtbot, panel.evaluate_btn)
    _idle(qtbot, panel)
    assert panel.evaluation is not None and panel.evaluation["model"] == model_id
    assert panel.evaluation["dataset"] == "station@1" and panel.evaluation["split"] == "test"
    assert panel.gate.passed and panel.verdict.text().startswith("GATE PASSED")
    shown = {panel.metrics_table.item(r, 0).text(): panel.metrics_table.item(r, 1).text()
             for r in range(panel.metrics_table.rowCount())}
    assert shown["recall"] == f"{panel.evaluation['recall']:.4f}"

    _click(qtbot, panel.deploy_btn)
    _idle(qtbot, panel)
    assert panel.last_deploy.deployed and panel.registry.active() == model_id
    roles = {panel.model_table.item(r, 0).text(): panel.model_table.item(r, 3).text()
             for r in range(panel.model_table.rowCount())}
    assert roles[model_id] == "ACTIVE"

    _click(qtbot, panel.rollback_btn)
    _idle(qtbot, panel)
    assert panel.registry.active() == first_active, panel.status.text()
    wait_idle(qtbot, ctx)
    actions = [e["action"] for e in rt.store.audit_entries(limit=500)]
    for a in ("dataset.created", "model.trained", "model.deployed", "model.rolled_back"):
        assert a in actions, a
    assert rt.store.audit_verify().ok
    panel.close_page()


def test_the_gate_refuses_a_model_and_nothing_switches(qtbot, partb_station, partb_ctx):
    rt = _station(partb_station, min_image_auroc=0.0, min_recall=0.0, max_false_reject_rate=1.0,
                  min_pixel_auroc=0.5)  # the station's dataset has no defect masks: cannot pass
    ctx = partb_ctx(rt, "admin")
    panel = _open(partb_ctx, ctx)
    active = panel.registry.active()
    model_id = _build_and_train(qtbot, panel)
    _click(qtbot, panel.evaluate_btn)
    _idle(qtbot, panel)
    assert not panel.gate.passed and panel.verdict.text().startswith("GATE FAILED")
    assert "pixel AUROC" in panel.reasons.text()
    assert check_gate(panel.evaluation, None, rt.cfg.lifecycle.gate).passed is False

    _click(qtbot, panel.shadow_btn)
    _idle(qtbot, panel)
    assert not panel.last_deploy.deployed and "refused" in panel.status.text()
    assert panel.registry.active() == active and panel.registry.shadow() is None
    wait_idle(qtbot, ctx)
    assert [e for e in rt.store.audit_entries() if e["action"] == "model.deploy_refused"
            and e["payload"]["model"] == model_id]
    panel.close_page()


def test_supervisor_is_refused_the_model_panel(qtbot, partb_station, partb_ctx):
    from station.ui.main_window import QtMainWindow

    rt = partb_station()
    ctx = partb_ctx(rt, "supervisor")
    win = QtMainWindow(ctx)
    partb_ctx.pages.append(win)
    win.sign_in_screen.signed_in.emit(ctx.session)
    assert "models" not in win.pages and not win.show_page("models")
    panel = _open(partb_ctx, ctx)
    assert not panel.build_btn.isEnabled() and not panel.rollback_btn.isEnabled()
    panel.build_dataset()  # called directly: refused and audited, nothing built
    wait_idle(qtbot, ctx)
    assert panel.datasets.list() == []
    refusals = [e for e in rt.store.audit_entries() if e["action"] == "user.refused"]
    assert refusals and refusals[-1]["payload"]["permission"] == "models"
    panel.close_page()
    win.shutdown()
