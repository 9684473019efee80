"""What a batch inspects: folders, globs, S3 prefixes and queries over the local record.

Every image becomes an :class:`ImageItem` with a stable id (source + size + mtime / ETag /
record id), which the resume ledger is keyed by, and a source key the shard assignment
hashes, so every machine of a sharded run agrees on who inspects what.
"""
from __future__ import annotations

import glob as globlib
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from station.batch.layout import LayoutError, split_s3_uri
from station.batch.s3io import S3Access

IMAGE_SUFFIXES = frozenset({".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".pgm", ".pnm"})
_GLOB_CHARS = re.compile(r"[*?\[]")
_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class InputError(ValueError):
    """An input that names nothing usable (missing folder, bad URI, empty match)."""


@dataclass(frozen=True)
class ImageItem:
    """One image to inspect and what the line knew about it."""

    uri: str  # absolute file path, or s3://bucket/key
    image_id: str  # stable: source + size + mtime / ETag / record id
    kind: str = "file"  # "file" or "s3"
    size: int | None = None
    part_id: str = ""
    lot: str = ""
    recipe: str = ""
    station: str = ""
    inspection_id: str | None = None  # the line's record of this image, when known
    line_decision: str | None = None
    bit_depth: int | None = None  # significant bits when known (a record says)
    etag: str = ""  # S3 objects: the ETag the listing saw

    @property
    def stem(self) -> str:
        return self.uri.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def stable_id(source: str, *parts: object) -> str:
    h = hashlib.sha256("\x1f".join([source, *map(str, parts)]).encode())
    return h.hexdigest()[:24]


def shard_of(item: ImageItem, shards: int) -> int:
    """The shard that inspects ``item``: a hash of its source, so no listing order matters."""
    return int(hashlib.sha256(item.uri.encode()).hexdigest()[:15], 16) % shards


def _file_item(path: Path, *, recipe: str, station: str, lot: str = "") -> ImageItem:
    st = path.stat()
    uri = str(path.resolve())
    return ImageItem(uri=uri, image_id=stable_id(uri, st.st_size, st.st_mtime_ns), size=st.st_size,
                     part_id=path.stem, lot=lot, recipe=recipe, station=station)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith(".")


def list_local(spec: str, *, recipe: str, station: str, lot: str = "") -> list[ImageItem]:
    """A folder (recursively), a glob (``**`` allowed) or one image file."""
    if _GLOB_CHARS.search(spec):
        paths = [Path(p) for p in globlib.glob(spec, recursive=True)]
        if not paths:
            raise InputError(f"{spec}: the pattern matches no file")
        paths = [p for p in paths if _is_image(p)]
    else:
        root = Path(spec).expanduser()
        if root.is_dir():
            paths = [p for p in root.rglob("*") if _is_image(p)]
        elif root.is_file():
            paths = [root]
        else:
            raise InputError(f"{spec}: no such file or folder")
    return [_file_item(p, recipe=recipe, station=station, lot=lot) for p in sorted(paths)]


def list_s3(uri: str, s3: S3Access, *, recipe: str, station: str, lot: str = "") -> list[ImageItem]:
    try:
        bucket, prefix = split_s3_uri(uri)
    except LayoutError as exc:
        raise InputError(str(exc)) from None
    items = []
    for obj in s3.list(bucket, f"{prefix}/" if prefix else ""):  # a prefix is a folder
        key = obj["Key"]
        if Path(key).suffix.lower() not in IMAGE_SUFFIXES or key.endswith("/"):
            continue
        items.append(_s3_item(f"s3://{bucket}/{key}", obj.get("Size"), obj.get("ETag", ""),
                              recipe=recipe, station=station, lot=lot))
    return sorted(items, key=lambda i: i.uri)


def _s3_item(src: str, size: int | None, etag: str, *, recipe: str, station: str, lot: str) -> ImageItem:
    return ImageItem(uri=src, image_id=stable_id(src, size, etag), kind="s3", size=size, etag=etag,
                     part_id=Path(src).stem, lot=lot, recipe=recipe, station=station)


def listing_bytes(items: Iterable[ImageItem]) -> bytes:
    """The listing an AWS run's submitter counted, one JSON line per S3 object (uri, size,
    ETag), so every child inspects that set - not whatever the prefix holds when it starts."""
    lines = []
    for item in sorted(items, key=lambda i: i.uri):
        if item.kind != "s3":
            raise InputError(f"{item.uri}: only S3 objects go into a run's listing")
        lines.append(json.dumps({"uri": item.uri, "size": item.size, "etag": item.etag}, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode() if lines else b""


def items_from_listing(data: bytes, where: str, *, recipe: str, station: str, lot: str = "") -> list[ImageItem]:
    """The items of a listing written by :func:`listing_bytes` (same image ids as listing S3)."""
    items = []
    for n, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            uri, size, etag = str(doc["uri"]), doc["size"], str(doc["etag"])
            split_s3_uri(uri)
        except (ValueError, KeyError, TypeError, LayoutError) as exc:
            raise InputError(f"{where}:{n}: not a listing line ({exc})") from None
        items.append(_s3_item(uri, size, etag, recipe=recipe, station=station, lot=lot))
    return items


@dataclass(frozen=True)
class RecordQuery:
    """Inspections of the local record to re-inspect (all filters optional, AND-ed)."""

    since: datetime | None = None
    until: datetime | None = None
    lot: str | None = None
    recipe: str | None = None
    decisions: tuple[str, ...] = ()
    station: str | None = None

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in (("since", self.since), ("until", self.until), ("lot", self.lot),
                                         ("recipe", self.recipe), ("station", self.station)) if v]
        if self.decisions:
            parts.append("decision=" + ",".join(self.decisions))
        return "record(" + ", ".join(parts) + ")"


def list_record(data_dir: Path, query: RecordQuery) -> list[ImageItem]:
    """The stored images of the inspections matching ``query`` (oldest first)."""
    from sqlalchemy import select

    from station.store.schema import Inspection
    from station.store.station_store import StationStore

    if not (Path(data_dir) / "station.db").exists():
        raise InputError(f"{data_dir}: no station record here (no station.db); pass --data-dir")
    store = StationStore(data_dir, recover=False)  # a reader: never takes the writer lock
    try:
        q = select(Inspection.id, Inspection.image_path, Inspection.part_id, Inspection.lot, Inspection.recipe,
                   Inspection.station, Inspection.decision, Inspection.image_sha256,
                   Inspection.image_bit_depth).where(Inspection.image_path.is_not(None)).order_by(Inspection.id)
        if query.since is not None:
            q = q.where(Inspection.started_at >= query.since)
        if query.until is not None:
            q = q.where(Inspection.started_at < query.until)
        for col, value in ((Inspection.lot, query.lot), (Inspection.recipe, query.recipe),
                           (Inspection.station, query.station)):
            if value:
                q = q.where(col == value)
        if query.decisions:
            q = q.where(Inspection.decision.in_(query.decisions))
        with store.reader.connect() as conn:
            rows = conn.execute(q).all()
        return [ImageItem(uri=str(store.images.path_of(r.image_path)),
                          image_id=stable_id(f"record:{r.id}", r.image_sha256 or ""),
                          part_id=r.part_id, lot=r.lot, recipe=r.recipe, station=r.station,
                          inspection_id=r.id, line_decision=r.decision, bit_depth=r.image_bit_depth)
                for r in rows]
    finally:
        store.close()


def attach_line_decisions(items: list[ImageItem], data_dir: Path) -> tuple[list[ImageItem], int]:
    """For ``--compare`` on files / S3 keys: images named by a station inspection id
    (``raw/.../<id>.png``) or by their content hash (the station's image store) get the
    decision recorded at the line. Returns the items and how many were matched."""
    from sqlalchemy import or_, select

    from station.store.schema import Inspection
    from station.store.station_store import StationStore

    wanted = [i for i in items if i.inspection_id is None and (_ULID.match(i.stem) or _SHA256.match(i.stem))]
    if not wanted or not (Path(data_dir) / "station.db").exists():
        return items, 0
    store = StationStore(data_dir, recover=False)
    try:
        found: dict[str, tuple] = {}
        stems = [i.stem for i in wanted]
        with store.reader.connect() as conn:
            for start in range(0, len(stems), 500):
                chunk = stems[start:start + 500]
                q = select(Inspection.id, Inspection.image_sha256, Inspection.decision, Inspection.part_id,
                           Inspection.lot, Inspection.recipe, Inspection.station).where(
                    or_(Inspection.id.in_(chunk), Inspection.image_sha256.in_(chunk)))
                for r in conn.execute(q):
                    found[r.id] = found[r.image_sha256 or r.id] = tuple(r)
    finally:
        store.close()
    out, matched = [], 0
    for item in items:
        rec = found.get(item.stem) if item.inspection_id is None else None
        if rec is None:
            out.append(item)
            continue
        matched += 1
        rid, _, decision, part_id, lot, recipe, station = rec
        out.append(replace(item, inspection_id=rid, line_decision=decision, part_id=part_id or item.part_id,
                           lot=lot or item.lot, recipe=recipe or item.recipe, station=station or item.station))
    return out, matched


def collect(specs: Iterable[str], *, s3: S3Access | None, recipe: str, station: str,
            lot: str = "") -> list[ImageItem]:
    """Every image named by ``specs`` (duplicates - the same file named twice - once)."""
    seen: dict[str, ImageItem] = {}
    for spec in specs:
        listed = (list_s3(spec, s3 or S3Access(), recipe=recipe, station=station, lot=lot)
                  if spec.startswith("s3://") else list_local(spec, recipe=recipe, station=station, lot=lot))
        for item in listed:
            seen.setdefault(item.uri, item)
    return list(seen.values())


def select_shard(items: Iterable[ImageItem], shard: int, shards: int) -> Iterator[ImageItem]:
    return (i for i in items if shard_of(i, shards) == shard)
