"""Deploy a model (active or shadow) through the gate, and roll back; every switch audited.

The switch itself is the registry's atomic pointer replace (``ACTIVE`` / ``SHADOW``); a
running station picks the new model up when it next opens its runtime. Every decision,
including a refusal, goes into the station's hash-chained audit log under the subject
``model-registry``; rollback reads that log to find the model that was active before the
last switch.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from station.datasets.store import DatasetError, DatasetStore
from station.detect.registry import ModelRegistry, ModelStoreError
from station.lifecycle.align import AlignError, aligner_for_model
from station.lifecycle.evaluate import evaluate_model
from station.lifecycle.gate import GateResult, check_gate

AUDIT_SUBJECT = "model-registry"
DEPLOYED, REFUSED, ROLLED_BACK = "model.deployed", "model.deploy_refused", "model.rolled_back"


class DeployError(Exception):
    """The deploy or rollback cannot even be attempted (unknown model, no dataset, no history)."""


class Auditor(Protocol):
    """What deploy needs from the station store: ``audit`` and ``audit_entries``."""

    def audit(self, action: str, subject: str = "", payload: Any = None, *, actor: str | None = None) -> int: ...

    def audit_entries(self, subject: str | None = None, limit: int = 100) -> list[dict[str, Any]]: ...


@dataclass
class DeployOutcome:
    deployed: bool
    model: str
    pointer: str  # "active" or "shadow"
    previous: str | None
    dataset: str | None
    gate: GateResult | None = None
    evaluations: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"deployed": self.deployed, "model": self.model, "pointer": self.pointer,
                "previous": self.previous, "dataset": self.dataset,
                "gate": self.gate.to_json() if self.gate else None,
                "reasons": self.gate.reasons if self.gate else []}


def _summary(ev: dict[str, Any]) -> dict[str, Any]:
    keys = ("image_auroc", "pixel_auroc", "precision", "recall", "f1", "false_reject_rate",
            "latency_ms_p50", "latency_ms_p99")
    return {k: ev.get(k) for k in keys}


def evaluation_for(registry: ModelRegistry, datasets: DatasetStore, model_id: str, dataset_ref: str, split: str,
                   progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """The stored evaluation of ``model_id`` on ``dataset_ref``/``split``, made (and stored) if missing."""
    dataset = datasets.load(dataset_ref)
    key = dataset.info.ref
    model = registry.load(model_id)
    stored = registry.evaluations(model_id).get(key)
    if (stored and stored.get("split") == split and stored.get("model_hash") == model.model_hash
            and stored.get("dataset_manifest_sha256") == dataset.info.manifest_sha256):
        return stored
    aligner = aligner_for_model(registry.info(model_id).meta, datasets.root.parent)
    ev = evaluate_model(model, datasets, dataset, split=split, progress=progress, aligner=aligner)
    registry.save_evaluation(model_id, key, ev)
    return ev


def gate_dataset(registry: ModelRegistry, model_id: str, override: str | None) -> str:
    if override:
        return override
    lineage = registry.info(model_id).meta.get("dataset") or {}
    if lineage.get("ref"):
        return str(lineage["ref"])
    raise DeployError(f"model {model_id} records no dataset version (lineage); name the gate's dataset "
                      f"with --dataset NAME@VERSION")


def deploy(registry: ModelRegistry, datasets: DatasetStore, auditor: Auditor, model_id: str, gate_cfg: Any, *,
           shadow: bool = False, dataset_ref: str | None = None, actor: str | None = None,
           progress: Callable[[int, int], None] | None = None) -> DeployOutcome:
    """Gate ``model_id`` and, if it passes, point ACTIVE (or SHADOW) at it. Always audited."""
    pointer = "shadow" if shadow else "active"
    try:
        registry.load(model_id)
    except ModelStoreError as e:
        raise DeployError(str(e)) from e
    ref = gate_dataset(registry, model_id, dataset_ref)
    try:
        ref = datasets.resolve(ref).ref
        candidate = evaluation_for(registry, datasets, model_id, ref, gate_cfg.split, progress)
    except (DatasetError, AlignError) as e:
        raise DeployError(f"gate dataset {ref}: {e}") from e
    except ValueError as e:
        raise DeployError(f"model {model_id} cannot be evaluated on {ref}: {e}") from e
    active_id = registry.active()
    previous = registry.shadow() if shadow else active_id
    active_ev = None
    reasons_pre: list[str] = []
    if active_id is not None and active_id != model_id:
        try:
            active_ev = evaluation_for(registry, datasets, active_id, ref, gate_cfg.split, progress)
        except (ValueError, ModelStoreError) as e:
            reasons_pre.append(f"the active model {active_id} cannot be evaluated on {ref} for the "
                               f"no-regression check: {e}")
    result = check_gate(candidate, active_ev, gate_cfg)
    if reasons_pre:
        result = GateResult(False, reasons_pre + result.reasons, result.checks)
    outcome = DeployOutcome(result.passed, model_id, pointer, previous, ref, result,
                            {"candidate": _summary(candidate), "active": _summary(active_ev) if active_ev else None})
    payload = {"pointer": pointer, "model": model_id, "previous": previous, "dataset": ref, "split": gate_cfg.split,
               "gate": result.to_json(), "metrics": outcome.evaluations}
    if not result.passed:
        auditor.audit(REFUSED, AUDIT_SUBJECT, payload, actor=actor)
        return outcome
    if shadow:
        registry.set_shadow(model_id)
    else:
        registry.set_active(model_id)
        if registry.shadow() == model_id:
            registry.set_shadow(None)  # a model does not shadow itself
    auditor.audit(DEPLOYED, AUDIT_SUBJECT, payload, actor=actor)
    return outcome


def rollback(registry: ModelRegistry, auditor: Auditor, *, actor: str | None = None) -> tuple[str, str]:
    """Point ACTIVE back at the model active before the last switch; return (restored, replaced)."""
    current = registry.active()
    for entry in reversed(auditor.audit_entries(subject=AUDIT_SUBJECT, limit=1000)):
        p = entry.get("payload") or {}
        if entry.get("action") in (DEPLOYED, ROLLED_BACK) and p.get("pointer") == "active":
            target = p.get("previous")
            if not target:
                raise DeployError(f"the last switch (audit entry {entry.get('seq')}) had no previous active model")
            if target == current:
                raise DeployError(f"{target} is already active")
            try:
                registry.set_active(target)
            except ModelStoreError as e:
                raise DeployError(f"cannot roll back to {target}: {e}") from e
            auditor.audit(ROLLED_BACK, AUDIT_SUBJECT,
                          {"pointer": "active", "model": target, "previous": current,
                           "undoes": entry.get("seq")}, actor=actor)
            return target, current or ""
    raise DeployError("no model switch in the audit log to roll back")
