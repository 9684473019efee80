"""The model panel (technician / admin): datasets, training with progress, evaluation
results, the gate's verdict, and deploy / shadow / roll back.

Everything runs through the model lifecycle's own functions (:mod:`station.datasets`,
:mod:`station.lifecycle`) on the task runner, so the panel does exactly what the
``linestation dataset / train / evaluate / deploy`` commands do, and every switch is
audited by them. The running line keeps its model until the station is restarted (a
model switch must not happen half-way through a lot).
"""
from __future__ import annotations

import importlib.util
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGroupBox,
    QHeaderView,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from station.datasets.station_import import InspectionQuery, import_inspections
from station.datasets.store import DatasetStore
from station.detect.registry import ModelRegistry
from station.lifecycle.deploy import deploy, evaluation_for, gate_dataset, rollback
from station.lifecycle.gate import check_gate
from station.lifecycle.trainers import train_from_dataset
from station.users import PermissionDenied

PERMISSION = "models"
METRICS = (("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"), ("precision", "precision"),
           ("recall", "recall"), ("f1", "F1"), ("false_reject_rate", "false-reject rate"),
           ("latency_ms_p50", "latency p50 (ms)"), ("latency_ms_p99", "latency p99 (ms)"))


def _table(headers: list[str]) -> QTableWidget:
    t = QTableWidget(0, len(headers))
    t.setHorizontalHeaderLabels(headers)
    t.verticalHeader().setVisible(False)
    t.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
    t.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
    header = t.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)  # headers stay readable
    header.setStretchLastSection(True)
    return t


def _fill(t: QTableWidget, rows: list[list[str]], keys: list[str]) -> None:
    current = selected_key(t)
    t.setRowCount(len(rows))
    for r, (row, key) in enumerate(zip(rows, keys)):
        for c, text in enumerate(row):
            item = QTableWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, key)
            t.setItem(r, c, item)
    if keys:
        t.selectRow(keys.index(current) if current in keys else len(keys) - 1)


def selected_key(t: QTableWidget) -> str | None:
    items = t.selectedItems()
    return items[0].data(Qt.ItemDataRole.UserRole) if items else None


def good_defect(counts: dict[str, Any]) -> tuple[int, int]:
    """Good and defect image counts of a dataset version (its counts are per split and label)."""
    good = defect = 0
    for split in ("train", "validation", "test"):
        for label, n in (counts.get(split) or {}).items():
            if label == "good":
                good += int(n)
            else:
                defect += int(n)
    return good, defect


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


class QtModelsPanel(QWidget):
    """Datasets, models, evaluation and the gate. ``ctx`` is the station's ``UiContext``."""

    def __init__(self, ctx: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        rt = ctx.runtime
        self.datasets = DatasetStore(rt.data_dir / "datasets")
        self.registry = ModelRegistry(rt.data_dir / "models")
        self.gate_cfg = rt.cfg.lifecycle.gate
        self.evaluation: dict[str, Any] | None = None
        self.gate = None
        self.last_deploy = None
        self._task = None
        self._closed = False

        # datasets
        self.dataset_table = _table(["dataset", "good", "defect", "train / val / test", "created", "source"])
        self.dataset_name = QLineEdit("station")
        self.include_unreviewed = QCheckBox("also unreviewed passes (good) and rejects (defect)")
        self.include_unreviewed.setChecked(True)
        self.build_btn = QPushButton("New dataset version from the station's inspections")
        ds_box = QGroupBox("Datasets")
        ds = QVBoxLayout(ds_box)
        ds.addWidget(self.dataset_table, 1)
        row = QHBoxLayout()
        row.addWidget(QLabel("Name"))
        row.addWidget(self.dataset_name)
        row.addWidget(self.include_unreviewed, 1)
        ds.addLayout(row)
        ds.addWidget(self.build_btn)

        # models
        self.model_table = _table(["model", "type", "version", "role", "dataset", "threshold"])
        self.model_type = QComboBox()
        self.model_type.addItems(["variation"] + (["patchcore"] if importlib.util.find_spec(
            "station.detect.patchcore") else []))
        self.train_btn = QPushButton("Train on the selected dataset")
        self.evaluate_btn = QPushButton("Evaluate + gate")
        self.deploy_btn = QPushButton("Deploy (active)")
        self.shadow_btn = QPushButton("Deploy as shadow")
        self.rollback_btn = QPushButton("Roll back")
        m_box = QGroupBox("Models")
        m = QVBoxLayout(m_box)
        m.addWidget(self.model_table, 1)
        row = QHBoxLayout()
        row.addWidget(QLabel("Type"))
        row.addWidget(self.model_type)
        row.addWidget(self.train_btn, 1)
        m.addLayout(row)
        row = QHBoxLayout()
        for b in (self.evaluate_btn, self.deploy_btn, self.shadow_btn, self.rollback_btn):
            b.setMinimumHeight(44)
            row.addWidget(b)
        m.addLayout(row)

        # evaluation and gate
        self.metrics_table = _table(["metric", "selected model", "active model"])
        self.verdict = QLabel("Gate: not evaluated")
        self.verdict.setObjectName("gateVerdict")
        self.verdict.setWordWrap(True)
        self.verdict.setMinimumHeight(64)
        self.reasons = QLabel("")
        self.reasons.setWordWrap(True)
        e_box = QGroupBox("Evaluation and gate")
        e = QVBoxLayout(e_box)
        e.addWidget(self.metrics_table, 1)
        e.addWidget(self.verdict)
        e.addWidget(self.reasons)

        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setVisible(False)
        left = QVBoxLayout()
        left.addWidget(ds_box, 2)
        left.addWidget(m_box, 3)
        body = QHBoxLayout()
        body.addLayout(left, 3)
        body.addWidget(e_box, 2)
        foot = QHBoxLayout()
        foot.addWidget(self.status, 1)
        foot.addWidget(self.progress)
        foot.addWidget(self.cancel_btn)
        root = QVBoxLayout(self)
        root.addLayout(body, 1)
        root.addLayout(foot)

        self.build_btn.clicked.connect(self.build_dataset)
        self.train_btn.clicked.connect(self.train)
        self.evaluate_btn.clicked.connect(self.evaluate)
        self.deploy_btn.clicked.connect(lambda: self.deploy(shadow=False))
        self.shadow_btn.clicked.connect(lambda: self.deploy(shadow=True))
        self.rollback_btn.clicked.connect(self.roll_back)
        self.cancel_btn.clicked.connect(self.cancel_task)
        self.model_table.itemSelectionChanged.connect(self._model_selected)
        if not ctx.can(PERMISSION):
            self.status.setText("The model panel needs a technician or admin sign-in.")
        self.refresh()

    # --- lists -----------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read datasets and models (small JSON files: cheap enough for the GUI thread)."""
        infos = self.datasets.list()
        rows, keys = [], []
        for i in infos:
            good, defect = good_defect(i.counts)
            by_split = " / ".join(str(sum((i.counts.get(sp) or {}).values())) for sp in ("train", "validation", "test"))
            rows.append([i.ref, str(good), str(defect), by_split, i.created_at[:16], i.source[:40]])
            keys.append(i.ref)
        _fill(self.dataset_table, rows, keys)
        active, shadow = self.registry.active(), self.registry.shadow()
        rows, keys = [], []
        for mi in self.registry.list():
            role = "ACTIVE" if mi.model_id == active else "SHADOW" if mi.model_id == shadow else ""
            ds = (mi.meta.get("dataset") or {})
            rows.append([mi.model_id, mi.model_type, mi.model_version, role, str(ds.get("ref") or ds.get("source") or "-"),
                         _fmt(mi.meta.get("threshold"))])
            keys.append(mi.model_id)
        _fill(self.model_table, rows, keys)
        self._update_buttons()

    def _model_selected(self) -> None:
        self.evaluation = self.gate = None
        self.verdict.setText("Gate: not evaluated")
        self.verdict.setStyleSheet("")
        self.reasons.setText("")
        self.metrics_table.setRowCount(0)
        self._update_buttons()

    @property
    def selected_model(self) -> str | None:
        return selected_key(self.model_table)

    @property
    def selected_dataset(self) -> str | None:
        return selected_key(self.dataset_table)

    def _update_buttons(self) -> None:
        ok = self.ctx.can(PERMISSION) and self._task is None and not self._closed
        self.build_btn.setEnabled(ok)
        self.train_btn.setEnabled(ok and self.selected_dataset is not None)
        for b in (self.evaluate_btn, self.deploy_btn, self.shadow_btn):
            b.setEnabled(ok and self.selected_model is not None)
        self.rollback_btn.setEnabled(ok)
        self.cancel_btn.setVisible(self._task is not None)
        self.progress.setVisible(self._task is not None)

    # --- background work -------------------------------------------------------------
    def _run(self, what: str, permission_what: str, fn, on_done, *, write: bool = False) -> None:
        if self._task is not None:
            return
        try:
            session = self.ctx.require(PERMISSION, permission_what)
        except PermissionDenied:  # refused, audited and shown by ctx.require
            return
        self.status.setText(f"{what} ...")
        self.progress.setRange(0, 0)

        def done(result: Any) -> None:
            self._task = None
            if self._closed:
                return
            self.status.setText("")
            on_done(result)
            self.refresh()

        def failed(exc: BaseException) -> None:
            self._task = None
            if self._closed:
                return
            self.status.setText(f"{what} failed: {exc}")
            self.ctx.notifier.error(f"{what} failed", exc)
            self._update_buttons()

        def progressed(message: str, fraction: float | None) -> None:
            if self._closed:
                return
            self.status.setText(message)
            if fraction is not None:
                self.progress.setRange(0, 1000)
                self.progress.setValue(int(1000 * fraction))

        self._task = self.ctx.tasks.run(lambda control: fn(control, session.username), done, failed, progressed,
                                        label=what, write=write)
        self._update_buttons()

    def cancel_task(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
            self.status.setText("Cancelled.")
            self._update_buttons()

    def close_page(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            self._task = None

    # --- actions ---------------------------------------------------------------------
    def build_dataset(self) -> None:
        name = self.dataset_name.text().strip()
        decisions = ("pass", "reject") if self.include_unreviewed.isChecked() else ()
        datasets, data_dir, store = self.datasets, self.ctx.runtime.data_dir, self.ctx.runtime.store

        def work(control, user):
            control.progress(f"collecting the inspections' images into dataset {name!r}")
            info, created = import_inspections(datasets, name, data_dir, InspectionQuery(decisions=decisions))
            if created:
                store.audit("dataset.created", info.ref, {"counts": info.counts, "source": info.source}, actor=user)
            return info, created

        def done(result) -> None:
            info, created = result
            good, defect = good_defect(info.counts)
            self.status.setText(f"Dataset {info.ref} {'created' if created else 'unchanged (same images)'}: "
                                f"{good} good, {defect} defect images.")

        self._run("building the dataset", "build a dataset", work, done, write=True)

    def train(self) -> None:
        ref, model_type = self.selected_dataset, self.model_type.currentText()
        if ref is None:
            return
        datasets, registry, store = self.datasets, self.registry, self.ctx.runtime.store

        def work(control, user):
            dataset = datasets.load(ref)

            def progress(stage: str, done: int, total: int) -> None:
                control.check()  # Cancel stops training between images
                control.progress(f"{stage}: {done} / {total}", done / total if total else None)

            model_id, model, choice = train_from_dataset(datasets, dataset, registry, model_type=model_type,
                                                         progress=progress)
            store.audit("model.trained", model_id, {"dataset": ref, "model_type": model_type,
                                                    "threshold": choice.to_json()}, actor=user)
            return model_id, choice

        def done(result) -> None:
            model_id, choice = result
            self.status.setText(f"Trained {model_id} (threshold {choice.value:.4g}). Evaluate it, then deploy.")
            self._select_model(model_id)

        self._run(f"training a {model_type} model on {ref}", "train a model", work, done)

    def _select_model(self, model_id: str) -> None:
        self.refresh()
        for r in range(self.model_table.rowCount()):
            if self.model_table.item(r, 0).data(Qt.ItemDataRole.UserRole) == model_id:
                self.model_table.selectRow(r)

    def evaluate(self) -> None:
        model_id = self.selected_model
        if model_id is None:
            return
        registry, datasets, gate_cfg = self.registry, self.datasets, self.gate_cfg
        override = self._gate_dataset_override(model_id)

        def work(control, user):
            ref = datasets.resolve(gate_dataset(registry, model_id, override)).ref

            def progress(done: int, total: int) -> None:
                control.check()
                control.progress(f"evaluating on {ref} ({gate_cfg.split}): {done} / {total}", done / total)

            candidate = evaluation_for(registry, datasets, model_id, ref, gate_cfg.split, progress)
            active_id, active = registry.active(), None
            if active_id is not None and active_id != model_id:
                try:
                    active = evaluation_for(registry, datasets, active_id, ref, gate_cfg.split, progress)
                except ValueError:
                    active = None  # e.g. the active model reads another image size; the gate says so
            return model_id, ref, candidate, active, check_gate(candidate, active, gate_cfg)

        self._run(f"evaluating {model_id}", "evaluate a model", work, self._show_evaluation)

    def _gate_dataset_override(self, model_id: str) -> str | None:
        """The gate judges a model on the dataset it was trained from (its lineage); a model
        without one (the first-run bootstrap model) is judged on the selected dataset."""
        lineage = self.registry.info(model_id).meta.get("dataset") or {}
        return None if lineage.get("ref") else self.selected_dataset

    def _show_evaluation(self, result) -> None:
        model_id, ref, candidate, active, gate = result
        self.evaluation, self.gate = candidate, gate
        rows = [[label, _fmt(candidate.get(key)), _fmt(active.get(key)) if active else "-"] for key, label in METRICS]
        cm = candidate.get("confusion_matrix") or {}
        rows.append(["confusion (tp/fp/tn/fn)", f"{cm.get('tp')}/{cm.get('fp')}/{cm.get('tn')}/{cm.get('fn')}", ""])
        rows.append(["threshold", _fmt((candidate.get("threshold") or {}).get("value")), ""])
        rows.append(["images (good/defect)", f"{candidate.get('n_good')}/{candidate.get('n_defect')}", ""])
        _fill(self.metrics_table, rows, [r[0] for r in rows])
        self.metrics_table.clearSelection()
        if gate.passed:
            self.verdict.setText(f"GATE PASSED  {model_id} on {ref} ({self.gate_cfg.split})")
            self.verdict.setStyleSheet("background: #1b5e20; color: white; font-size: 18pt; padding: 8px;")
            self.reasons.setText("")
        else:
            self.verdict.setText(f"GATE FAILED  {model_id} on {ref} ({self.gate_cfg.split})")
            self.verdict.setStyleSheet("background: #b71c1c; color: white; font-size: 18pt; padding: 8px;")
            self.reasons.setText("\n".join(f"- {r}" for r in gate.reasons))

    def deploy(self, shadow: bool) -> None:
        model_id = self.selected_model
        if model_id is None:
            return
        registry, datasets, store, gate_cfg = self.registry, self.datasets, self.ctx.runtime.store, self.gate_cfg
        where = "shadow" if shadow else "active"
        override = self._gate_dataset_override(model_id)

        def work(control, user):
            return deploy(registry, datasets, store, model_id, gate_cfg, shadow=shadow, actor=user, dataset_ref=override,
                          progress=lambda d, t: control.progress(f"gate evaluation {d} / {t}", d / t))

        def done(outcome) -> None:
            self.last_deploy = outcome
            if outcome.deployed:
                self.status.setText(f"{model_id} is now the {where} model (takes effect when the station restarts).")
                self.ctx.notifier.info(f"model {model_id} deployed as {where}")
            else:
                self.status.setText("Deploy refused by the gate: " + "; ".join(outcome.gate.reasons))
                self.ctx.notifier.warning(f"model {model_id} not deployed: the gate refused it")
            if outcome.gate is not None:
                self.gate = outcome.gate
                self.verdict.setText(("GATE PASSED  " if outcome.gate.passed else "GATE FAILED  ") + model_id)

        self._run(f"deploying {model_id} as {where}", f"deploy a model as {where}", work, done, write=True)

    def roll_back(self) -> None:
        registry, store = self.registry, self.ctx.runtime.store

        def work(control, user):
            return rollback(registry, store, actor=user)

        def done(result) -> None:
            restored, replaced = result
            self.status.setText(f"Rolled back: {restored} is active again (was {replaced}); "
                                "takes effect when the station restarts.")
            self.ctx.notifier.info(f"model rolled back to {restored}")

        self._run("rolling back the model", "roll back the model", work, done, write=True)
