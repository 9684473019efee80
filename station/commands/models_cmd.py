"""``linestation models list [--json]``: lineage, metrics, and which model is active or shadow."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from station.commands.common import EXIT_OK

METRICS = ("image_auroc", "pixel_auroc", "precision", "recall", "f1", "false_reject_rate",
           "latency_ms_p50", "latency_ms_p99")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="the model registry")
    msub = p.add_subparsers(dest="models_command", required=True)
    ls = msub.add_parser("list", help="every model with lineage, metrics and its role")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)


def describe(registry) -> list[dict]:
    active, shadow = registry.active(), registry.shadow()
    out = []
    for m in registry.list():
        lineage = m.meta.get("dataset") or {}
        evals = {k: {"split": v.get("split"), **{x: v.get(x) for x in METRICS}}
                 for k, v in registry.evaluations(m.model_id).items()}
        out.append({
            "model": m.model_id, "model_type": m.model_type, "model_version": m.model_version,
            "model_hash": m.meta.get("model_hash"), "created_at": m.created_at,
            "role": "active" if m.model_id == active else ("shadow" if m.model_id == shadow else ""),
            "dataset": lineage.get("ref") or lineage.get("source"), "lineage": lineage,
            "params": m.meta.get("params"), "threshold": m.meta.get("threshold"), "evaluations": evals,
        })
    return out


def run_list(args: argparse.Namespace, data_dir: Path) -> int:
    from station.detect.registry import ModelRegistry

    rows = describe(ModelRegistry(data_dir / "models"))
    if args.json:
        print(json.dumps(rows))
        return EXIT_OK
    if not rows:
        print(f"no models in {data_dir / 'models'}")
    for r in rows:
        ev = next(iter(r["evaluations"].items()), None)
        metrics = ""
        if ev:
            k, v = ev
            f = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
            metrics = (f"  [{k} {v['split']}: AUROC {f(v['image_auroc'])} pixel {f(v['pixel_auroc'])} "
                       f"recall {f(v['recall'])} F1 {f(v['f1'])} FRR {f(v['false_reject_rate'])}]")
        role = f"{r['role'].upper():<7}" if r["role"] else " " * 7
        print(f"{role} v{r['model_version']:<4} {r['model']:<44} {r['model_type']:<10} "
              f"from {r['dataset'] or '?'}{metrics}")
    return EXIT_OK
