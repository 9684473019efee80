"""``linestation evaluate MODEL --dataset NAME[@V] [--split test] [--json]``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from station.commands.common import EXIT_FAIL, EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a model on a dataset split; stored with the model")
    p.add_argument("model", help="model id, or 'active' / 'shadow'")
    p.add_argument("--dataset", required=True, help="NAME or NAME@VERSION")
    p.add_argument("--split", default="test", choices=("test", "validation", "train"))
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=run)


def resolve_model(registry, name: str) -> str | None:
    if name == "active":
        return registry.active()
    if name == "shadow":
        return registry.shadow()
    return name


def run(args: argparse.Namespace, data_dir: Path) -> int:
    from station.datasets.store import DatasetError, DatasetStore
    from station.detect.registry import ModelRegistry, ModelStoreError
    from station.lifecycle.align import aligner_for_model
    from station.lifecycle.evaluate import evaluate_model
    from station.lifecycle.progress import ProgressBar

    registry = ModelRegistry(data_dir / "models")
    store = DatasetStore(data_dir / "datasets")
    model_id = resolve_model(registry, args.model)
    if model_id is None:
        print(f"no {args.model} model in {registry.root}", file=sys.stderr)
        return EXIT_FAIL
    bar = ProgressBar()
    try:
        model = registry.load(model_id)
        dataset = store.load(args.dataset)
        aligner = aligner_for_model(registry.info(model_id).meta, data_dir)
        ev = evaluate_model(model, store, dataset, split=args.split, progress=lambda d, t: bar("evaluating", d, t),
                            aligner=aligner)
    except (DatasetError, ModelStoreError, ValueError) as e:
        print(f"evaluation failed: {e}", file=sys.stderr)
        return EXIT_FAIL
    if args.split != "train":
        registry.save_evaluation(model_id, dataset.info.ref, ev)
    if args.json:
        print(json.dumps(ev))
        return EXIT_OK

    def f(v):
        return "n/a" if v is None else f"{v:.4f}"
    cm = ev["confusion_matrix"]
    print(f"{model_id} on {ev['dataset']} ({args.split}: {ev['n_good']} good, {ev['n_defect']} defect)")
    print(f"  image AUROC {f(ev['image_auroc'])}  pixel AUROC {f(ev['pixel_auroc'])}")
    print(f"  precision {f(ev['precision'])}  recall {f(ev['recall'])}  F1 {f(ev['f1'])}  "
          f"false-reject rate {f(ev['false_reject_rate'])}  (tp {cm['tp']} fp {cm['fp']} tn {cm['tn']} fn {cm['fn']})")
    print(f"  latency p50 {ev['latency_ms_p50']:.1f} ms  p99 {ev['latency_ms_p99']:.1f} ms")
    print(f"  threshold {ev['threshold']['value']:.4g}: {ev['threshold']['rule']}")
    return EXIT_OK
