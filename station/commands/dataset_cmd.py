"""``linestation dataset import|import-station|list|export``: versioned, immutable datasets."""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

from station.commands.common import EXIT_FAIL, EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dataset", help="versioned image datasets (import, list, export)")
    dsub = p.add_subparsers(dest="dataset_command", required=True)
    imp = dsub.add_parser("import", help="import a folder (train/good, test/<class>, ground_truth/<class>) "
                                         "or a Lookout for Vision / Ground Truth manifest (.jsonl)")
    imp.add_argument("name")
    imp.add_argument("source", type=Path, help="folder in the anomaly layout, or a manifest .jsonl/.manifest")
    imp.add_argument("--validation-fraction", type=float, default=0.3,
                     help="share of each test class moved to the validation split (folder import without validation/)")
    imp.add_argument("--split", default="train", choices=("train", "validation", "test"),
                     help="split for manifest lines that do not say (Lookout kept train and test apart)")
    imp.add_argument("--json", action="store_true")
    imp.set_defaults(func=run_import)
    st = dsub.add_parser("import-station", help="import captured inspections (reviewed labels, or decisions)")
    st.add_argument("name")
    st.add_argument("--labels", default="good,defect", help="review labels to take (comma list; '' for none)")
    st.add_argument("--decisions", default="", help="also take unreviewed inspections with these decisions "
                                                    "(pass = good, reject = defect), e.g. pass,reject")
    st.add_argument("--since", default=None, help="only inspections started at or after this ISO time")
    st.add_argument("--limit", type=int, default=None)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=run_import_station)
    ls = dsub.add_parser("list", help="every dataset version with its counts and manifest hash")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)
    ex = dsub.add_parser("export", help="write a version as a Lookout for Vision / Ground Truth manifest")
    ex.add_argument("ref", help="NAME or NAME@VERSION (default: latest)")
    ex.add_argument("--manifest", type=Path, required=True, help="output .jsonl")
    ex.add_argument("--prefix", default=None, help="source-ref prefix instead of local paths, e.g. s3://bucket/datasets/")
    ex.add_argument("--split", action="append", choices=("train", "validation", "test"),
                    help="only these splits (repeatable; default all)")
    ex.set_defaults(func=run_export)


def _store(data_dir: Path):
    from station.datasets.store import DatasetStore

    return DatasetStore(data_dir / "datasets")


def _report(info, created: bool, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**info.to_json(), "created": created}))
        return
    word = "created" if created else "unchanged: same content as the latest version"
    c = info.counts
    splits = "; ".join(f"{s} " + ", ".join(f"{n} {label}" for label, n in c[s].items())
                       for s in ("train", "validation", "test") if c[s])
    print(f"dataset {info.ref} {word} ({c['images']} images, {c['masks']} masks; {splits}; "
          f"manifest sha256 {info.manifest_sha256[:16]})")


def run_import(args: argparse.Namespace, data_dir: Path) -> int:
    from station.datasets.folder_import import import_anomaly_folder
    from station.datasets.lfv_manifest import import_manifest
    from station.datasets.store import DatasetError

    store = _store(data_dir)
    try:
        if args.source.is_file():
            info, created = import_manifest(store, args.name, args.source, default_split=args.split)
        else:
            info, created = import_anomaly_folder(store, args.name, args.source,
                                                  validation_fraction=args.validation_fraction)
    except DatasetError as e:
        print(f"dataset import failed: {e}", file=sys.stderr)
        return EXIT_FAIL
    _report(info, created, args.json)
    return EXIT_OK


def run_import_station(args: argparse.Namespace, data_dir: Path) -> int:
    from station.datasets.station_import import InspectionQuery, import_inspections
    from station.datasets.store import DatasetError

    try:
        since = datetime.fromisoformat(args.since) if args.since else None
    except ValueError:
        print(f"--since {args.since!r} is not an ISO time (e.g. 2026-11-26T08:00:00+00:00)", file=sys.stderr)
        return EXIT_FAIL
    query = InspectionQuery(labels=tuple(x for x in args.labels.split(",") if x),
                            decisions=tuple(x for x in args.decisions.split(",") if x),
                            since=since, limit=args.limit)
    try:
        info, created = import_inspections(_store(data_dir), args.name, data_dir, query)
    except DatasetError as e:
        print(f"dataset import failed: {e}", file=sys.stderr)
        return EXIT_FAIL
    _report(info, created, args.json)
    return EXIT_OK


def run_list(args: argparse.Namespace, data_dir: Path) -> int:
    from station.datasets.store import DatasetError

    try:
        infos = _store(data_dir).list()
    except DatasetError as e:
        print(f"cannot list datasets: {e}", file=sys.stderr)
        return EXIT_FAIL
    if args.json:
        print(json.dumps([i.to_json() for i in infos]))
        return EXIT_OK
    if not infos:
        print(f"no datasets in {data_dir / 'datasets'}")
    for i in infos:
        c = i.counts
        splits = "  ".join(f"{s} {sum(c[s].values())}" for s in ("train", "validation", "test"))
        print(f"{i.ref:<24} {c['images']:>6} images {c['masks']:>5} masks  {splits}  {i.created_at}  "
              f"sha256 {i.manifest_sha256[:12]}  {i.source}")
    return EXIT_OK


def run_export(args: argparse.Namespace, data_dir: Path) -> int:
    from station.datasets.lfv_manifest import export_manifest
    from station.datasets.store import SPLITS, DatasetError

    store = _store(data_dir)
    try:
        ds = store.load(args.ref)
        n = export_manifest(store, ds, args.manifest, prefix=args.prefix, splits=tuple(args.split or SPLITS))
    except (DatasetError, OSError) as e:
        print(f"dataset export failed: {e}", file=sys.stderr)
        return EXIT_FAIL
    print(f"{n} lines of {ds.info.ref} written to {args.manifest}")
    return EXIT_OK
