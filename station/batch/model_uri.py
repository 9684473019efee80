"""Models on S3: ``s3://bucket/[prefix/]models/<model_id>/<model_version>/``.

The layout of ARCHITECTURE.md: one immutable folder per model version holding the
registry's two files (``model.npz`` and ``model.json``, which records the sha256 of
``model.npz``). :func:`upload_model` puts a local registry model there (skipped when the
same model is already present; refused when a *different* one is, since a version never
changes); :func:`resolve_model_uri` brings it back into a local cache, verified file by
file against ``model.json`` as :meth:`ModelRegistry.load` does, and returns the local
model directory.

``--model`` (:func:`station.batch.models.resolve_model`) accepts a model directory, so
``linestation batch`` passes its spec through :func:`local_model_spec` first: an AWS Batch
child given ``--model s3://...`` runs the verified copy in ``<data-dir>/batch/model-cache``.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from station.batch.layout import LayoutError, split_s3_uri
from station.batch.s3io import S3Access, S3AccessError
from station.detect.registry import META_FILE
from station.durable import publish_dir

MODELS_DIR = "models"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ModelUriError(ValueError):
    """An ``s3://`` model that cannot be used; the message names the URI and the reason."""


@dataclass(frozen=True)
class ModelLocation:
    bucket: str
    prefix: str  # the key prefix of the model folder, without the trailing slash
    model_id: str
    model_version: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"


def is_model_uri(spec: str) -> bool:
    return str(spec).startswith("s3://")


def parse_model_uri(uri: str) -> ModelLocation:
    """``s3://bucket/[base/]models/<id>/<version>/`` -> its parts (ModelUriError if not)."""
    try:
        bucket, prefix = split_s3_uri(uri)
    except LayoutError as exc:
        raise ModelUriError(str(exc)) from None
    parts = prefix.split("/")
    if len(parts) < 3 or parts[-3] != MODELS_DIR or not _ID.match(parts[-2]) or not _ID.match(parts[-1]):
        raise ModelUriError(f"{uri!r}: a model URI is s3://BUCKET/[PREFIX/]{MODELS_DIR}/<model_id>/<model_version>/")
    return ModelLocation(bucket, prefix, parts[-2], parts[-1])


def model_location(base_uri: str, model_id: str, model_version: str) -> ModelLocation:
    """Where a model goes under ``base_uri`` (``s3://bucket[/prefix]``)."""
    bucket, prefix = split_s3_uri(base_uri)
    return parse_model_uri(f"s3://{bucket}/{prefix + '/' if prefix else ''}{MODELS_DIR}/{model_id}/{model_version}/")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_meta(data: bytes, where: str) -> dict:
    try:
        meta = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelUriError(f"{where}: unreadable model metadata: {exc}") from None
    files = meta.get("files") if isinstance(meta, dict) else None
    if not isinstance(files, dict) or not files or not all(isinstance(v, dict) and v.get("sha256") for v in files.values()):
        raise ModelUriError(f"{where}: model.json must list its files with their sha256")
    if any(not _ID.match(name) for name in files):
        raise ModelUriError(f"{where}: model.json names a file outside the model folder")
    return meta


def upload_model(model_dir: Path, base_uri: str, access: S3Access) -> tuple[ModelLocation, bool]:
    """Upload the registry model in ``model_dir`` under ``base_uri``; (location, uploaded?).

    Data files go up first and ``model.json`` last, so a reader that finds ``model.json``
    finds the whole model. When ``model.json`` is already there with the same content the
    upload is skipped; a different one is an error (a model version is immutable).
    """
    model_dir = Path(model_dir)
    try:
        local_meta_bytes = (model_dir / META_FILE).read_bytes()
    except OSError as exc:
        raise ModelUriError(f"{model_dir}: not a model directory ({exc})") from None
    meta = _read_meta(local_meta_bytes, str(model_dir / META_FILE))
    loc = model_location(base_uri, str(meta.get("model_id") or model_dir.name), str(meta.get("model_version", "")))
    remote = access.get_or_none(loc.bucket, loc.key(META_FILE))
    if remote is not None:
        if _sha256(remote) == _sha256(local_meta_bytes):
            return loc, False
        raise ModelUriError(f"{loc.uri} already holds a different model.json (sha256 {_sha256(remote)[:12]}, "
                            f"local {_sha256(local_meta_bytes)[:12]}); a model version is never overwritten")
    for name, info in meta["files"].items():
        data = (model_dir / name).read_bytes()
        if _sha256(data) != info["sha256"]:
            raise ModelUriError(f"{model_dir / name}: content hash mismatch; not uploading a corrupt model")
        access.put_bytes(loc.bucket, loc.key(name), data, "application/octet-stream")
    access.put_bytes(loc.bucket, loc.key(META_FILE), local_meta_bytes, "application/json")
    return loc, True


def local_model_spec(spec: str, data_dir: Path, access: S3Access) -> str:
    """``spec`` unchanged, or for an ``s3://`` model URI the verified local copy's directory.

    Raises :class:`~station.batch.models.ModelChoiceError` (what ``--model`` errors are)."""
    if not is_model_uri(spec):
        return spec
    from station.batch.models import ModelChoiceError

    try:
        return str(resolve_model_uri(spec, Path(data_dir) / "batch" / "model-cache", access))
    except (ModelUriError, S3AccessError) as exc:
        raise ModelChoiceError(f"--model {spec}: {exc}") from None


def _verified(model_dir: Path) -> bool:
    """A cached copy is used only if every file still matches its recorded hash."""
    try:
        meta = _read_meta((model_dir / META_FILE).read_bytes(), str(model_dir))
        return all(_sha256((model_dir / n).read_bytes()) == i["sha256"] for n, i in meta["files"].items())
    except (OSError, ModelUriError):
        return False


def resolve_model_uri(uri: str, cache_dir: Path, access: S3Access) -> Path:
    """The local model directory of the S3 model ``uri``, downloaded into ``cache_dir``.

    Every file is checked against the sha256 in ``model.json`` before the directory is
    renamed into place, so the cache holds verified models only; a mismatch (a truncated
    or tampered upload) raises :class:`ModelUriError` naming the key, and leaves nothing.
    ``model.json`` must also name the id and version the URI says.
    """
    loc = parse_model_uri(uri)
    final = Path(cache_dir) / loc.bucket / loc.prefix / loc.model_id
    if _verified(final):
        return final
    meta_bytes = access.get_or_none(loc.bucket, loc.key(META_FILE))
    if meta_bytes is None:
        raise ModelUriError(f"{loc.uri}: no {META_FILE} there (upload the model first)")
    meta = _read_meta(meta_bytes, loc.uri + META_FILE)
    got = (str(meta.get("model_id", "")), str(meta.get("model_version", "")))
    if got != (loc.model_id, loc.model_version):
        raise ModelUriError(f"{loc.uri}: {META_FILE} describes {got[0]} version {got[1]}, not what the URI names")
    def verified():
        for name, info in meta["files"].items():
            data = access.get_or_none(loc.bucket, loc.key(name))
            if data is None:
                raise ModelUriError(f"{loc.uri}{name}: missing (model.json lists it)")
            if _sha256(data) != info["sha256"]:
                raise ModelUriError(f"{loc.uri}{name}: content hash mismatch (recorded {info['sha256'][:12]}, "
                                    f"downloaded {_sha256(data)[:12]})")
            yield name, data
        yield META_FILE, meta_bytes

    publish_dir(final, verified(), is_valid=_verified)  # an unverifiable older copy is replaced
    return final
