"""``linestation train --dataset NAME[@VERSION] [--model-type patchcore|variation] [--json]``."""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from station.commands.common import EXIT_FAIL, EXIT_OK


def default_model_type() -> str:
    """PatchCore when this install has it, else the variation model."""
    return "patchcore" if importlib.util.find_spec("station.detect.patchcore") else "variation"


def _param(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a dataset version (records its lineage)")
    p.add_argument("--dataset", required=True, help="NAME or NAME@VERSION (default: latest version)")
    p.add_argument("--model-type", choices=("patchcore", "variation"), default=None,
                   help="default: patchcore where installed, else variation")
    p.add_argument("--param", type=_param, action="append", default=[], metavar="KEY=VALUE",
                   help="model parameter (repeatable), e.g. --param downscale=4")
    p.add_argument("--calibration", default=None, metavar="SERIAL/RECIPE@vN",
                   help="register images to this calibration profile and use its ROI, as the station does "
                        "(for datasets of the station's own captures)")
    p.add_argument("--json", action="store_true", help="print one JSON object with key 'model'")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, data_dir: Path) -> int:
    from station.datasets.store import DatasetError, DatasetStore
    from station.detect.registry import ModelRegistry
    from station.lifecycle.align import AlignError
    from station.lifecycle.progress import ProgressBar
    from station.lifecycle.trainers import TrainError, train_from_dataset

    store = DatasetStore(data_dir / "datasets")
    model_type = args.model_type or default_model_type()
    try:
        dataset = store.load(args.dataset)
        model_id, model, choice = train_from_dataset(
            store, dataset, ModelRegistry(data_dir / "models"), model_type=model_type,
            params=dict(args.param), progress=ProgressBar(), calibration=args.calibration)
    except (DatasetError, TrainError, AlignError) as e:
        print(f"training failed: {e}", file=sys.stderr)
        return EXIT_FAIL
    if args.json:
        print(json.dumps({"model": model_id, "model_type": model_type, "model_hash": model.model_hash,
                          "model_version": model.model_version, "dataset": dataset.info.ref,
                          "threshold": choice.to_json()}))
    else:
        print(f"threshold {choice.value:.4g}: {choice.rule}" + (f" ({choice.note})" if choice.note else ""),
              file=sys.stderr)
        print(model_id)
    return EXIT_OK
